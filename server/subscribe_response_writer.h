#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "eventbus/v1/eventbus.pb.h"
#include "grpcpp/support/byte_buffer.h"
#include "kafka/consumer.h"

namespace eventbus::server {

// Writes a Subscribe stream's SubscribeResponses in Protobuf's wire format
// straight from the records: the message a client parses is the one
// FillDelivery would build, but no Protobuf message is built and a record's
// bytes are copied once, into the response. Records that are not
// binary-mode CloudEvents (structured mode, raw records) go through
// FillDelivery and Protobuf.
//
// A delivery's record stays referenced until Take. Not thread-safe.
class SubscribeResponseWriter {
 public:
  // Adds a delivery to the next response. Returns the bytes it adds.
  size_t AddDelivery(kafka::Delivery delivery);
  void AddAckError(const v1::AckError& error);

  size_t deliveries() const { return items_.size(); }
  bool empty() const { return items_.empty() && ack_errors_.empty(); }

  // The response with everything added since the last Take, in one slice,
  // and forgets it (releasing the records).
  grpc::ByteBuffer Take();

 private:
  // One field of an Event: a string attribute, the time (field
  // v1::Event::kTimeFieldNumber) or an extension.
  struct Field {
    int number = 0;
    absl::string_view name;   // an extension's
    absl::string_view value;  // a string attribute's or an extension's
    int64_t seconds = 0;      // the time's
    int32_t nanos = 0;
  };
  struct Item {
    kafka::Delivery delivery;
    // Its event's fields: fields_[first_field, end_field).
    size_t first_field = 0;
    size_t end_field = 0;
    size_t event_size = 0;
    size_t body_size = 0;
    // The key's field: key, or raw_key when the key is not UTF-8 (a proto3
    // string must be, or the client cannot parse the message).
    int key_field = v1::Delivery::kKeyFieldNumber;
    // Whether the record is not a binary-mode CloudEvent: the Delivery is
    // then `fallback`, serialized by Protobuf.
    bool uses_fallback = false;
    std::string fallback;
  };
  class FieldCollector;

  size_t PlanEvent(Item& item);
  static size_t EventFieldSize(const Field& f);
  static uint8_t* WriteEventField(const Field& f, uint8_t* p);
  uint8_t* WriteDelivery(const Item& item, uint8_t* p) const;

  std::vector<Item> items_;
  std::vector<Field> fields_;
  // AckErrors, each as a field of SubscribeResponse.
  std::string ack_errors_;
  size_t size_ = 0;
};

}  // namespace eventbus::server
