#pragma once

#include <string>

#include "eventbus/v1/eventbus.pb.h"

namespace eventbus::cli {

// One delivery as the single JSON line `eventbus subscribe` prints (without
// the newline):
//   {"delivery_id":N,"topic":..,"partition":N,"offset":N,"key":..,
//    "attempt":N,"event":{"id","source","type","spec_version","subject",
//    "time" (RFC 3339),"data_content_type","data_schema",
//    "data" (when valid UTF-8) or "data_base64","extensions":{..}}}
// plus "raw":true and "headers":[{"name","value" or "value_base64"}] for a
// record that is not a CloudEvent. Empty optional attributes are left out.
std::string DeliveryToJson(const v1::Delivery& delivery);

}  // namespace eventbus::cli
