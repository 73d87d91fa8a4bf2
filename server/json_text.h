#pragma once

// Small, strict pieces of JSON (RFC 8259) and UTF-8 for the structured
// CloudEvents encoding. protobuf's JSON parser accepts more than JSON (single
// quotes, bare names), so it cannot decide whether data may be inlined.

#include <string>

#include "absl/strings/string_view.h"

namespace eventbus::server {

// True when `s` is well-formed UTF-8: no overlong forms, no surrogates,
// nothing above U+10FFFF.
bool IsValidUtf8(absl::string_view s);

// `s` with every byte that is not part of well-formed UTF-8 replaced by
// U+FFFD.
std::string ToValidUtf8(absl::string_view s);

// True when `text` is exactly one JSON value (RFC 8259), with optional
// surrounding whitespace, in valid UTF-8.
bool IsStrictJson(absl::string_view text);

// Appends `s` (valid UTF-8) as a JSON string literal.
void AppendJsonString(absl::string_view s, std::string* out);

}  // namespace eventbus::server
