#include "client/cli/delivery_json.h"

#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/json_text.h"

namespace eventbus::cli {

using ::eventbus::common::AppendJsonString;
using ::eventbus::common::IsStrictJson;
using ::eventbus::common::IsValidUtf8;
namespace {

void AppendField(const char* name, const std::string& value, bool* first,
                 std::string* out) {
  if (!*first) out->push_back(',');
  *first = false;
  AppendJsonString(name, out);
  out->push_back(':');
  AppendJsonString(value, out);
}

void AppendRawField(const char* name, const std::string& json, bool* first,
                    std::string* out) {
  if (!*first) out->push_back(',');
  *first = false;
  AppendJsonString(name, out);
  out->push_back(':');
  out->append(json);
}

// Bytes as "<name>" when valid UTF-8, else "<name>_base64".
void AppendBytes(const std::string& name, const std::string& bytes,
                 bool* first, std::string* out) {
  if (IsValidUtf8(bytes)) {
    AppendField(name.c_str(), bytes, first, out);
  } else {
    AppendField(absl::StrCat(name, "_base64").c_str(),
                absl::Base64Escape(bytes), first, out);
  }
}

std::string EventJson(const v1::Event& e) {
  std::string out = "{";
  bool first = true;
  AppendField("id", e.id(), &first, &out);
  AppendField("source", e.source(), &first, &out);
  AppendField("type", e.type(), &first, &out);
  AppendField("spec_version", e.spec_version(), &first, &out);
  if (!e.subject().empty()) AppendField("subject", e.subject(), &first, &out);
  if (e.has_time()) {
    const absl::Time t = absl::FromUnixSeconds(e.time().seconds()) +
                         absl::Nanoseconds(e.time().nanos());
    AppendField("time",
                absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", t,
                                 absl::UTCTimeZone()),
                &first, &out);
  }
  if (!e.data_content_type().empty()) {
    AppendField("data_content_type", e.data_content_type(), &first, &out);
  }
  if (!e.data_schema().empty()) {
    AppendField("data_schema", e.data_schema(), &first, &out);
  }
  AppendBytes("data", e.data(), &first, &out);
  // Sorted, so the output does not depend on the map's order.
  std::map<std::string, std::string> extensions(e.extensions().begin(),
                                                e.extensions().end());
  std::string ext = "{";
  bool ext_first = true;
  for (const auto& [name, value] : extensions) {
    AppendField(name.c_str(), value, &ext_first, &ext);
  }
  ext.push_back('}');
  AppendRawField("extensions", ext, &first, &out);
  out.push_back('}');
  return out;
}

}  // namespace

std::string DeliveryToJson(const v1::Delivery& d) {
  std::string out = "{";
  bool first = true;
  AppendRawField("delivery_id", absl::StrCat(d.delivery_id()), &first, &out);
  AppendField("topic", d.topic(), &first, &out);
  AppendRawField("partition", absl::StrCat(d.partition()), &first, &out);
  AppendRawField("offset", absl::StrCat(d.offset()), &first, &out);
  // A key that is not UTF-8 comes in raw_key and prints as key_base64.
  AppendBytes("key", d.raw_key().empty() ? d.key() : d.raw_key(), &first, &out);
  AppendRawField("attempt", absl::StrCat(d.attempt()), &first, &out);
  if (d.raw()) {
    AppendRawField("raw", "true", &first, &out);
    std::string headers = "[";
    for (int i = 0; i < d.headers_size(); ++i) {
      if (i > 0) headers.push_back(',');
      headers.push_back('{');
      bool h_first = true;
      AppendField("name", d.headers(i).name(), &h_first, &headers);
      AppendBytes("value", d.headers(i).value(), &h_first, &headers);
      headers.push_back('}');
    }
    headers.push_back(']');
    AppendRawField("headers", headers, &first, &out);
  }
  AppendRawField("event", EventJson(d.event()), &first, &out);
  out.push_back('}');
  return out;
}

}  // namespace eventbus::cli
