#pragma once

// W3C trace context (https://www.w3.org/TR/trace-context/).

#include "absl/strings/string_view.h"

namespace eventbus::common {

// The trace id (32 lowercase hex digits) of a valid traceparent
// ("00-<trace id>-<parent id>-<flags>"; later versions may append fields),
// or "" when it is not one: not hex, the wrong length, the version ff, or an
// all-zero trace or parent id.
absl::string_view TraceIdOf(absl::string_view traceparent);

}  // namespace eventbus::common
