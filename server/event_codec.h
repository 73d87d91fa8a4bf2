#pragma once

// The mapping between eventbus.v1.Event and a Kafka record, per the
// CloudEvents 1.0 Kafka protocol binding:
//   binary mode:     value = data, attributes as `ce_<name>` headers,
//                    `content-type` = datacontenttype;
//   structured mode: value = the event as application/cloudevents+json.
// The record key is the request key, else the `partitionkey` extension.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "eventbus/v1/eventbus.pb.h"
#include "kafka/record.h"

namespace eventbus::server {

enum class ContentMode { kBinary, kStructured };

inline constexpr absl::string_view kStructuredContentType =
    "application/cloudevents+json";

// True when data of this datacontenttype is JSON (empty, application/json,
// text/json, */*+json): structured mode inlines such data when it is
// strict JSON, rather than as a string or data_base64.
bool IsJsonContentType(absl::string_view content_type);

// OK when `topic` is a valid Kafka topic name (1-249 characters of
// [a-zA-Z0-9._-], not "." or ".."); INVALID_ARGUMENT naming the problem
// otherwise.
absl::Status ValidateTopicName(absl::string_view topic);

// Checks `request` and fills in what the caller left empty: event.id (a
// UUID), event.time (`now`), event.spec_version ("1.0"), event.source
// (`default_source`). Returns INVALID_ARGUMENT naming the field for: a bad
// topic, a missing event or type, an unsupported spec_version, attributes
// that are not valid CloudEvents values, bad extension names.
absl::Status PrepareRequest(v1::PublishRequest& request,
                            absl::string_view default_source, absl::Time now);

// Encodes a prepared request as a Kafka record; in binary mode the event's
// data moves into the record (the request's is left empty). Returns
// RESOURCE_EXHAUSTED when key, value and headers together exceed
// `max_event_bytes`.
absl::StatusOr<kafka::Record> EncodeRecord(v1::PublishRequest& request,
                                           ContentMode mode,
                                           int64_t max_event_bytes);

// Decodes a record written in either mode back into an Event; the record's
// value becomes the event's data. Returns INVALID_ARGUMENT when the record
// is not a CloudEvent.
absl::StatusOr<v1::Event> DecodeRecord(kafka::Record record);
// The same from a record's headers and value.
absl::StatusOr<v1::Event> DecodeEvent(const std::vector<kafka::Header>& headers,
                                      std::string value);
// The same into `*e` (which may be on an arena): the value is copied once,
// into the data. On an error `*e` is left partly filled.
absl::Status DecodeEventInto(absl::Span<const kafka::HeaderView> headers,
                             absl::string_view value, v1::Event* e);

// Binary-mode decoding, step by step, for who writes the Event another way
// than into a v1::Event (the Subscribe stream writes Protobuf's wire format
// straight from the record). DecodeEventInto is built on it.
//
// The field of v1::Event a CloudEvents attribute is kept in: its field
// number, v1::Event::kExtensionsFieldNumber for an extension.
int AttributeFieldNumber(absl::string_view name);
// The record's content-type header (the last, names compared without case),
// or null.
const kafka::HeaderView* ContentTypeHeader(
    absl::Span<const kafka::HeaderView> headers);
// Whether that header makes the record a structured-mode CloudEvent.
bool IsStructured(const kafka::HeaderView* content_type);
// What a binary-mode record holds, in header order; a later value of the
// same attribute replaces an earlier one, as in Protobuf's wire format.
class BinaryEventSink {
 public:
  // A string attribute of v1::Event, by field number.
  virtual void Attribute(int field_number, absl::string_view value) = 0;
  virtual void Time(int64_t seconds, int32_t nanos) = 0;
  virtual void Extension(absl::string_view name, absl::string_view value) = 0;

 protected:
  ~BinaryEventSink() = default;
};
// Reads the attributes of a binary-mode record (`content_type` is
// ContentTypeHeader's answer; its value comes last, as data_content_type).
// Returns INVALID_ARGUMENT when the record is not a CloudEvent; `sink` may
// have been told part of it then.
absl::Status ReadBinaryEvent(absl::Span<const kafka::HeaderView> headers,
                             const kafka::HeaderView* content_type,
                             BinaryEventSink& sink);

// RFC 3339 in UTC with as many fractional digits as needed.
std::string FormatRfc3339(absl::Time t);
// Parses RFC 3339 (absl::RFC3339_full: any offset, fractional seconds, 'T'
// or 't', 'Z' or 'z'); on failure returns false and says why in `*err`.
bool ParseRfc3339(absl::string_view text, absl::Time* t, std::string* err);

// W3C trace context (https://www.w3.org/TR/trace-context/) as the CloudEvents
// distributed tracing extension carries it: the extensions "traceparent" and
// "tracestate", on Kafka the headers ce_traceparent and ce_tracestate.
struct TraceContext {
  std::string traceparent;  // empty: none
  std::string tracestate;
};
// Gives the event the call's trace context when it has none of its own
// (an invalid traceparent in the call is ignored, as W3C asks).
void ApplyTraceContext(const TraceContext& trace, v1::Event* event);

// A random (version 4) UUID in its canonical text form.
std::string NewUuid();

}  // namespace eventbus::server
