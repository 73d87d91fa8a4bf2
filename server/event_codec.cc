#include "server/event_codec.h"

#include <algorithm>
#include <array>
#include <map>
#include <random>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/json_text.h"
#include "common/trace_context.h"

namespace eventbus::server {

using ::eventbus::common::AppendJsonString;
using ::eventbus::common::IsStrictJson;
using ::eventbus::common::IsValidUtf8;
using ::eventbus::common::JsonMember;
using ::eventbus::common::SplitJsonObject;
using ::eventbus::common::UnescapeJsonString;

namespace {

constexpr absl::string_view kHeaderPrefix = "ce_";
constexpr absl::string_view kContentTypeHeader = "content-type";
constexpr absl::string_view kPartitionKeyExtension = "partitionkey";
constexpr size_t kMaxTopicLength = 249;
constexpr size_t kMaxExtensionNameLength = 20;
// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range of
// google.protobuf.Timestamp.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;

constexpr std::array<absl::string_view, 10> kReservedNames = {
    "id",   "source",          "specversion", "type",    "datacontenttype",
    "data", "dataschema",      "subject",     "time",    "data_base64"};

bool HasControlOrSpace(absl::string_view s) {
  for (unsigned char c : s) {
    if (c <= 0x20 || c == 0x7f) return true;
  }
  return false;
}

bool HasControl(absl::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

absl::Time ToTime(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

void SetTime(absl::Time t, google::protobuf::Timestamp* ts) {
  const int64_t seconds = absl::ToUnixSeconds(t);
  ts->set_seconds(seconds);
  ts->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
}

bool IsTextContentType(absl::string_view content_type) {
  return absl::StartsWithIgnoreCase(content_type, "text/");
}

void AppendJsonMember(absl::string_view name, absl::string_view value,
                      std::string* out) {
  if (out->size() > 1) out->push_back(',');
  AppendJsonString(name, out);
  out->push_back(':');
  AppendJsonString(value, out);
}

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

absl::Status ValidateEvent(const v1::Event& e) {
  if (e.type().empty()) {
    return Invalid("event.type", "is required (e.g. \"com.example.order.created\")");
  }
  if (HasControl(e.type())) {
    return Invalid("event.type", "must not contain control characters");
  }
  if (e.spec_version() != "1.0") {
    return Invalid("event.spec_version",
                   absl::StrCat("\"", e.spec_version(),
                                "\" is not supported; use \"1.0\" or leave it "
                                "empty"));
  }
  if (HasControl(e.id())) {
    return Invalid("event.id", "must not contain control characters");
  }
  if (HasControlOrSpace(e.source())) {
    return Invalid("event.source",
                   "must be a URI-reference without spaces or control "
                   "characters");
  }
  if (HasControl(e.subject())) {
    return Invalid("event.subject", "must not contain control characters");
  }
  if (!e.data_content_type().empty() &&
      (e.data_content_type().find('/') == std::string::npos ||
       HasControl(e.data_content_type()))) {
    return Invalid("event.data_content_type",
                   absl::StrCat("\"", e.data_content_type(),
                                "\" is not a media type (e.g. "
                                "\"application/json\")"));
  }
  if (HasControlOrSpace(e.data_schema())) {
    return Invalid("event.data_schema",
                   "must be a URI without spaces or control characters");
  }
  if (e.has_time() &&
      (e.time().seconds() < kMinTimestampSeconds ||
       e.time().seconds() > kMaxTimestampSeconds || e.time().nanos() < 0 ||
       e.time().nanos() > 999999999)) {
    return Invalid("event.time",
                   "is out of range (0001-01-01 to 9999-12-31, nanos "
                   "0-999999999)");
  }
  for (const auto& [name, value] : e.extensions()) {
    const std::string field = absl::StrCat("event.extensions[\"", name, "\"]");
    if (name.empty() || name.size() > kMaxExtensionNameLength) {
      return Invalid(field, "extension names are 1-20 characters");
    }
    for (char c : name) {
      if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c)) {
        return Invalid(field,
                       "extension names may only contain a-z and 0-9");
      }
    }
    for (absl::string_view reserved : kReservedNames) {
      if (name == reserved) {
        return Invalid(field, "is a standard attribute, not an extension; "
                              "use the Event field instead");
      }
    }
    if (HasControl(value)) {
      return Invalid(field, "must not contain control characters");
    }
  }
  return absl::OkStatus();
}

std::string StructuredValue(const v1::Event& e) {
  std::string out = "{";
  AppendJsonMember("specversion", e.spec_version(), &out);
  AppendJsonMember("id", e.id(), &out);
  AppendJsonMember("source", e.source(), &out);
  AppendJsonMember("type", e.type(), &out);
  if (!e.subject().empty()) AppendJsonMember("subject", e.subject(), &out);
  if (e.has_time()) AppendJsonMember("time", FormatRfc3339(ToTime(e.time())), &out);
  if (!e.data_content_type().empty()) {
    AppendJsonMember("datacontenttype", e.data_content_type(), &out);
  }
  if (!e.data_schema().empty()) {
    AppendJsonMember("dataschema", e.data_schema(), &out);
  }
  std::map<std::string, std::string> sorted(e.extensions().begin(),
                                            e.extensions().end());
  for (const auto& [name, value] : sorted) AppendJsonMember(name, value, &out);
  if (!e.data().empty()) {
    if (IsJsonContentType(e.data_content_type()) && IsStrictJson(e.data())) {
      // Without the JSON whitespace around it, so that a consumer reads
      // back exactly the data it inlines.
      out.append(",\"data\":");
      const absl::string_view data = absl::StripAsciiWhitespace(e.data());
      out.append(data.data(), data.size());
    } else if (IsTextContentType(e.data_content_type()) &&
               IsValidUtf8(e.data())) {
      AppendJsonMember("data", e.data(), &out);
    } else {
      AppendJsonMember("data_base64", absl::Base64Escape(e.data()), &out);
    }
  }
  out.push_back('}');
  return out;
}

absl::Status NotCloudEvent(absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("record is not a CloudEvent: ", why));
}

// Sets the Event field `field` (AttributeFieldNumber of `name`) to `value`.
void SetStringField(int field, absl::string_view name, absl::string_view value,
                    v1::Event* e) {
  switch (field) {
    case v1::Event::kIdFieldNumber:
      e->set_id(value.data(), value.size());
      break;
    case v1::Event::kSourceFieldNumber:
      e->set_source(value.data(), value.size());
      break;
    case v1::Event::kTypeFieldNumber:
      e->set_type(value.data(), value.size());
      break;
    case v1::Event::kSpecVersionFieldNumber:
      e->set_spec_version(value.data(), value.size());
      break;
    case v1::Event::kSubjectFieldNumber:
      e->set_subject(value.data(), value.size());
      break;
    case v1::Event::kDataContentTypeFieldNumber:
      e->set_data_content_type(value.data(), value.size());
      break;
    case v1::Event::kDataSchemaFieldNumber:
      e->set_data_schema(value.data(), value.size());
      break;
    default:
      (*e->mutable_extensions())[std::string(name)] = std::string(value);
      break;
  }
}

// Builds the Event from what ReadBinaryEvent reports.
class EventBuilder final : public BinaryEventSink {
 public:
  explicit EventBuilder(v1::Event* e) : e_(e) {}
  void Attribute(int field, absl::string_view value) override {
    SetStringField(field, absl::string_view(), value, e_);
  }
  void Time(int64_t seconds, int32_t nanos) override {
    e_->mutable_time()->set_seconds(seconds);
    e_->mutable_time()->set_nanos(nanos);
  }
  void Extension(absl::string_view name, absl::string_view value) override {
    (*e_->mutable_extensions())[std::string(name)] = std::string(value);
  }

 private:
  v1::Event* const e_;
};

// Sets one attribute as a binary-mode record or a structured value names it.
absl::Status SetAttribute(absl::string_view name, absl::string_view value,
                          v1::Event* e) {
  const int field = AttributeFieldNumber(name);
  if (field == v1::Event::kTimeFieldNumber) {
    absl::Time t;
    std::string err;
    if (!ParseRfc3339(value, &t, &err)) {
      return NotCloudEvent(absl::StrCat("bad time \"", value, "\": ", err));
    }
    SetTime(t, e->mutable_time());
    return absl::OkStatus();
  }
  SetStringField(field, name, value, e);
  return absl::OkStatus();
}

absl::StatusOr<v1::Event> DecodeStructured(absl::string_view value) {
  // Split by hand, not through google.protobuf.Struct: data keeps its text
  // (Struct holds numbers as doubles, losing integers above 2^53, and its
  // parser stops at 100 levels of nesting, which publish accepts).
  // The attributes are proto3 strings, which must be UTF-8: SplitJsonObject
  // checks the whole value.
  std::vector<JsonMember> members;
  if (!SplitJsonObject(value, &members)) {
    return NotCloudEvent("structured value is not a JSON object in UTF-8");
  }
  const JsonMember* data = nullptr;
  const JsonMember* data_base64 = nullptr;
  std::string data_content_type;
  for (const JsonMember& m : members) {
    if (m.name == "data") {
      data = &m;
    } else if (m.name == "data_base64") {
      data_base64 = &m;
    } else if (m.name == "datacontenttype" && absl::StartsWith(m.value, "\"")) {
      if (!UnescapeJsonString(m.value, &data_content_type)) {
        return NotCloudEvent("bad datacontenttype");
      }
    }
  }
  // The JSON format forbids both; taking either would drop the other.
  if (data != nullptr && data_base64 != nullptr) {
    return NotCloudEvent("both data and data_base64");
  }
  v1::Event e;
  std::string text;
  for (const JsonMember& m : members) {
    if (&m == data) {
      // A string is the data itself unless the data is JSON, where the
      // string literal is the JSON value.
      if (absl::StartsWith(m.value, "\"") &&
          !IsJsonContentType(data_content_type)) {
        if (!UnescapeJsonString(m.value, &text)) {
          return NotCloudEvent("data is a string that is not UTF-8");
        }
        e.set_data(std::move(text));
      } else {
        e.set_data(m.value.data(), m.value.size());
      }
      continue;
    }
    if (&m == data_base64) {
      std::string bytes;
      if (!absl::StartsWith(m.value, "\"") ||
          !UnescapeJsonString(m.value, &text) ||
          !absl::Base64Unescape(text, &bytes)) {
        return NotCloudEvent("data_base64 is not a base64 string");
      }
      e.set_data(std::move(bytes));
      continue;
    }
    // Attributes are strings; anything else keeps its JSON text.
    if (absl::StartsWith(m.value, "\"")) {
      if (!UnescapeJsonString(m.value, &text)) {
        return NotCloudEvent(
            absl::StrCat("attribute ", m.name, " is not UTF-8"));
      }
    } else {
      text.assign(m.value.data(), m.value.size());
    }
    absl::Status s = SetAttribute(m.name, text, &e);
    if (!s.ok()) return s;
  }
  if (e.spec_version().empty()) return NotCloudEvent("no specversion");
  return e;
}

}  // namespace

bool IsJsonContentType(absl::string_view content_type) {
  absl::string_view media = content_type.substr(0, content_type.find(';'));
  media = absl::StripAsciiWhitespace(media);
  return media.empty() || absl::EqualsIgnoreCase(media, "application/json") ||
         absl::EqualsIgnoreCase(media, "text/json") ||
         absl::EndsWithIgnoreCase(media, "+json");
}

std::string FormatRfc3339(absl::Time t) {
  // absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ") by hand for the common case
  // (years 1970..9999): it runs once per published event.
  if (t < absl::UnixEpoch() || t >= absl::FromUnixSeconds(253402300800)) {
    // %E4Y: RFC 3339 wants four digits, 0001 too.
    return absl::FormatTime("%E4Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
  }
  const int64_t whole = absl::ToUnixSeconds(t);
  int64_t fraction = absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(whole));
  // The date from the days since 1970-01-01 (H. Hinnant's civil_from_days,
  // for days >= 0): a few integer steps, where gmtime_r was a tenth of
  // this function's cost.
  const int64_t days = whole / 86400;
  const int64_t second_of_day = whole % 86400;
  const int64_t shifted = days + 719468;  // days since 0000-03-01
  const int64_t era = shifted / 146097;
  const int64_t day_of_era = shifted - era * 146097;
  const int64_t year_of_era =
      (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const int64_t day_of_year =
      day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const int64_t month_from_march = (5 * day_of_year + 2) / 153;
  const int day = static_cast<int>(day_of_year - (153 * month_from_march + 2) / 5 + 1);
  const int month = static_cast<int>(month_from_march < 10 ? month_from_march + 3
                                                           : month_from_march - 9);
  const int year = static_cast<int>(year_of_era + era * 400 + (month <= 2 ? 1 : 0));
  // Digits by hand: printf's formatting showed up in the publish profile.
  char buf[32];
  char* p = buf;
  auto put = [&p](int value, int width) {
    for (int i = width - 1; i >= 0; --i) {
      p[i] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
    p += width;
  };
  put(year, 4);
  *p++ = '-';
  put(month, 2);
  *p++ = '-';
  put(day, 2);
  *p++ = 'T';
  put(static_cast<int>(second_of_day / 3600), 2);
  *p++ = ':';
  put(static_cast<int>(second_of_day / 60 % 60), 2);
  *p++ = ':';
  put(static_cast<int>(second_of_day % 60), 2);
  if (fraction != 0) {
    int digits = 9;
    while (fraction % 10 == 0) {
      fraction /= 10;
      --digits;
    }
    *p++ = '.';
    put(static_cast<int>(fraction), digits);
  }
  *p++ = 'Z';
  return std::string(buf, static_cast<size_t>(p - buf));
}

namespace {

// Digits of text[pos, pos + n) as a number, or -1.
int Digits(absl::string_view text, size_t pos, size_t n) {
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return -1;
    v = v * 10 + (text[i] - '0');
  }
  return v;
}

// Days from 1970-01-01 to y-m-d (proleptic Gregorian; H. Hinnant's
// days_from_civil).
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// The common shapes of RFC 3339 by hand: "YYYY-MM-DDTHH:MM:SS", up to nine
// fractional digits, then Z or an offset. False for anything else (which
// may still be valid: absl then decides).
bool ParseRfc3339Fast(absl::string_view s, absl::Time* t) {
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' ||
      (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':') {
    return false;
  }
  const int year = Digits(s, 0, 4), month = Digits(s, 5, 2),
            day = Digits(s, 8, 2), hour = Digits(s, 11, 2),
            minute = Digits(s, 14, 2), second = Digits(s, 17, 2);
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 ||
      hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59) {
    return false;
  }
  const bool leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
  if (day > kDays[month - 1] + (month == 2 && leap ? 1 : 0)) return false;
  size_t pos = 19;
  int64_t nanos = 0;
  if (s[pos] == '.') {
    const size_t start = ++pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
    const size_t digits = pos - start;
    if (digits == 0 || digits > 9) return false;
    nanos = Digits(s, start, digits);
    for (size_t i = digits; i < 9; ++i) nanos *= 10;
  }
  int offset_minutes = 0;
  if (pos + 1 == s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    // UTC
  } else if (pos + 6 == s.size() && (s[pos] == '+' || s[pos] == '-') &&
             s[pos + 3] == ':') {
    const int oh = Digits(s, pos + 1, 2), om = Digits(s, pos + 4, 2);
    if (oh < 0 || oh > 23 || om < 0 || om > 59) return false;
    offset_minutes = (oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
  } else {
    return false;
  }
  const int64_t seconds = DaysFromCivil(year, month, day) * 86400 +
                          hour * 3600 + minute * 60 + second -
                          int64_t{offset_minutes} * 60;
  *t = absl::FromUnixSeconds(seconds) + absl::Nanoseconds(nanos);
  return true;
}

}  // namespace

bool ParseRfc3339(absl::string_view text, absl::Time* t, std::string* err) {
  // absl::ParseTime goes through a general strptime: it runs once per
  // delivered event.
  if (ParseRfc3339Fast(text, t)) return true;
  return absl::ParseTime(absl::RFC3339_full, text, t, err);
}

void ApplyTraceContext(const TraceContext& trace, v1::Event* event) {
  if (trace.traceparent.empty() ||
      common::TraceIdOf(trace.traceparent).empty() ||
      event->extensions().contains("traceparent")) {
    return;
  }
  auto& ext = *event->mutable_extensions();
  ext["traceparent"] = trace.traceparent;
  if (!trace.tracestate.empty() && !ext.contains("tracestate")) {
    ext["tracestate"] = trace.tracestate;
  }
}

std::string NewUuid() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::array<unsigned char, 16> b;
  for (size_t i = 0; i < b.size(); i += 8) {
    uint64_t r = rng();
    for (size_t k = 0; k < 8; ++k) b[i + k] = static_cast<unsigned char>(r >> (8 * k));
  }
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  // 8-4-4-4-12 lower-case hex digits, without printf (it showed up in the
  // publish profile: this runs for every event without an id).
  static constexpr char kHex[] = "0123456789abcdef";
  char out[36];
  size_t o = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = kHex[b[i] >> 4];
    out[o++] = kHex[b[i] & 0x0f];
  }
  return std::string(out, sizeof(out));
}

absl::Status ValidateTopicName(absl::string_view topic) {
  if (topic.empty()) {
    return Invalid("topic", "is required");
  }
  if (topic.size() > kMaxTopicLength) {
    return Invalid("topic", absl::StrCat("is ", topic.size(),
                                         " characters long; the maximum is 249"));
  }
  if (topic == "." || topic == "..") {
    return Invalid("topic", absl::StrCat("\"", topic, "\" is not allowed"));
  }
  for (char c : topic) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-') {
      return Invalid("topic",
                     absl::StrCat("\"", absl::CHexEscape(topic),
                                  "\" may only contain a-z, A-Z, 0-9, '.', "
                                  "'_' and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::Status PrepareRequest(v1::PublishRequest& request,
                            absl::string_view default_source, absl::Time now) {
  absl::Status topic = ValidateTopicName(request.topic());
  if (!topic.ok()) return topic;
  if (!request.has_event()) {
    return Invalid("event", "is required");
  }
  v1::Event& e = *request.mutable_event();
  if (e.id().empty()) e.set_id(NewUuid());
  if (e.source().empty()) e.set_source(std::string(default_source));
  if (e.spec_version().empty()) e.set_spec_version("1.0");
  if (!e.has_time()) SetTime(now, e.mutable_time());
  return ValidateEvent(e);
}

absl::StatusOr<kafka::Record> EncodeRecord(v1::PublishRequest& request,
                                           ContentMode mode,
                                           int64_t max_event_bytes) {
  const v1::Event& e = request.event();
  kafka::Record record;
  record.topic = request.topic();
  if (!request.key().empty()) {
    record.key = request.key();
  } else if (auto it = e.extensions().find(std::string(kPartitionKeyExtension));
             it != e.extensions().end() && !it->second.empty()) {
    record.key = it->second;
  }
  if (mode == ContentMode::kStructured) {
    record.value = StructuredValue(e);
    record.headers.push_back(
        {std::string(kContentTypeHeader),
         absl::StrCat(kStructuredContentType, "; charset=UTF-8")});
  } else {
    // Kafka consumers (this sidecar's too) read a record whose content-type
    // is application/cloudevents as a structured-mode event: its data would
    // be taken for the event itself.
    if (absl::StartsWithIgnoreCase(e.data_content_type(), "application/cloudevents")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "event.data_content_type \"", e.data_content_type(),
          "\" marks a structured-mode CloudEvent on Kafka; topic \"",
          request.topic(),
          "\" is written in binary mode (publish the event itself, or list "
          "the topic in events.structured_topics)"));
    }
    // The data moves: the request is done with once encoded.
    record.value = std::move(*request.mutable_event()->mutable_data());
    // ce_ specversion, id, source, type, time, subject, dataschema, the
    // extensions and content-type at most: no reallocation on the way.
    record.headers.reserve(8 + static_cast<size_t>(e.extensions_size()));
    // The attributes' header names are literals (short enough for no
    // allocation); only an extension's is put together.
    auto add = [&record](std::string name, std::string value) {
      record.headers.push_back({std::move(name), std::move(value)});
    };
    add("ce_specversion", e.spec_version());
    add("ce_id", e.id());
    add("ce_source", e.source());
    add("ce_type", e.type());
    if (e.has_time()) add("ce_time", FormatRfc3339(ToTime(e.time())));
    if (!e.subject().empty()) add("ce_subject", e.subject());
    if (!e.data_schema().empty()) add("ce_dataschema", e.data_schema());
    if (!e.extensions().empty()) {
      std::map<std::string, std::string> sorted(e.extensions().begin(),
                                                e.extensions().end());
      for (const auto& [name, value] : sorted) {
        add(absl::StrCat(kHeaderPrefix, name), value);
      }
    }
    if (!e.data_content_type().empty()) {
      record.headers.push_back(
          {std::string(kContentTypeHeader), e.data_content_type()});
    }
  }
  const size_t bytes = record.PayloadBytes();
  if (static_cast<int64_t>(bytes) > max_event_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "event is ", bytes, " bytes on Kafka (key, value and headers); the "
        "limit is ", max_event_bytes, " bytes (limits.max_event_bytes)"));
  }
  return record;
}

absl::StatusOr<v1::Event> DecodeRecord(kafka::Record record) {
  return DecodeEvent(record.headers, std::move(record.value));
}

absl::StatusOr<v1::Event> DecodeEvent(const std::vector<kafka::Header>& headers,
                                      std::string value) {
  std::vector<kafka::HeaderView> views;
  views.reserve(headers.size());
  for (const kafka::Header& h : headers) views.push_back({h.name, h.value});
  v1::Event e;
  absl::Status status = DecodeEventInto(views, value, &e);
  if (!status.ok()) return status;
  return e;
}

int AttributeFieldNumber(absl::string_view name) {
  if (name == "id") return v1::Event::kIdFieldNumber;
  if (name == "source") return v1::Event::kSourceFieldNumber;
  if (name == "type") return v1::Event::kTypeFieldNumber;
  if (name == "specversion") return v1::Event::kSpecVersionFieldNumber;
  if (name == "subject") return v1::Event::kSubjectFieldNumber;
  if (name == "time") return v1::Event::kTimeFieldNumber;
  if (name == "datacontenttype") return v1::Event::kDataContentTypeFieldNumber;
  if (name == "dataschema") return v1::Event::kDataSchemaFieldNumber;
  return v1::Event::kExtensionsFieldNumber;
}

const kafka::HeaderView* ContentTypeHeader(
    absl::Span<const kafka::HeaderView> headers) {
  const kafka::HeaderView* found = nullptr;
  for (const kafka::HeaderView& h : headers) {
    if (absl::EqualsIgnoreCase(h.name, kContentTypeHeader)) found = &h;
  }
  return found;
}

bool IsStructured(const kafka::HeaderView* content_type) {
  return content_type != nullptr &&
         absl::StartsWithIgnoreCase(content_type->value, kStructuredContentType);
}

absl::Status ReadBinaryEvent(absl::Span<const kafka::HeaderView> headers,
                             const kafka::HeaderView* content_type,
                             BinaryEventSink& sink) {
  absl::string_view spec_version;
  for (const kafka::HeaderView& h : headers) {
    if (!absl::StartsWith(h.name, kHeaderPrefix)) continue;
    // Attributes are proto3 strings, which must be UTF-8.
    if (!IsValidUtf8(h.name) || !IsValidUtf8(h.value)) {
      return NotCloudEvent("a ce_ header is not UTF-8");
    }
    const absl::string_view name = h.name.substr(kHeaderPrefix.size());
    const int field = AttributeFieldNumber(name);
    if (field == v1::Event::kTimeFieldNumber) {
      absl::Time t;
      std::string err;
      if (!ParseRfc3339(h.value, &t, &err)) {
        return NotCloudEvent(absl::StrCat("bad time \"", h.value, "\": ", err));
      }
      google::protobuf::Timestamp ts;
      SetTime(t, &ts);
      sink.Time(ts.seconds(), ts.nanos());
    } else if (field == v1::Event::kExtensionsFieldNumber) {
      sink.Extension(name, h.value);
    } else {
      if (field == v1::Event::kSpecVersionFieldNumber) spec_version = h.value;
      sink.Attribute(field, h.value);
    }
  }
  if (spec_version.empty()) return NotCloudEvent("no ce_specversion header");
  if (content_type != nullptr) {
    if (!IsValidUtf8(content_type->value)) {
      return NotCloudEvent("the content-type header is not UTF-8");
    }
    sink.Attribute(v1::Event::kDataContentTypeFieldNumber, content_type->value);
  }
  return absl::OkStatus();
}

absl::Status DecodeEventInto(absl::Span<const kafka::HeaderView> headers,
                             absl::string_view value, v1::Event* e) {
  const kafka::HeaderView* content_type = ContentTypeHeader(headers);
  if (IsStructured(content_type)) {
    absl::StatusOr<v1::Event> structured = DecodeStructured(value);
    if (!structured.ok()) return structured.status();
    *e = *std::move(structured);
    return absl::OkStatus();
  }
  EventBuilder builder(e);
  absl::Status s = ReadBinaryEvent(headers, content_type, builder);
  if (!s.ok()) return s;
  e->set_data(value.data(), value.size());
  return absl::OkStatus();
}

}  // namespace eventbus::server
