#pragma once

// Small, strict pieces of JSON (RFC 8259) and UTF-8, shared by the server
// (the structured CloudEvents encoding, the JSON log format) and the CLI.
// protobuf's JSON parser accepts more than JSON (single quotes, bare names),
// so it cannot decide whether data may be inlined.

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace eventbus::common {

// True when `s` is well-formed UTF-8: no overlong forms, no surrogates,
// nothing above U+10FFFF.
bool IsValidUtf8(absl::string_view s);

// `s` with every byte that is not part of well-formed UTF-8 replaced by
// U+FFFD.
std::string ToValidUtf8(absl::string_view s);

// True when `text` is exactly one JSON value (RFC 8259), with optional
// surrounding whitespace, in valid UTF-8.
bool IsStrictJson(absl::string_view text);

// One member of a JSON object: its name, unescaped, and its value's JSON
// text exactly as in the input.
struct JsonMember {
  std::string name;
  absl::string_view value;
};

// Splits `text`, one strict JSON object (as IsStrictJson), into its members
// in order. False when `text` is anything else, or when a member name holds
// an escaped lone surrogate (it has no UTF-8). Values are not unescaped: a
// number keeps every digit, nesting is bounded only as IsStrictJson's.
bool SplitJsonObject(absl::string_view text, std::vector<JsonMember>* members);

// Decodes `literal`, one strict JSON string literal with its quotes, into
// UTF-8. False when it is not one, or holds an escaped lone surrogate.
bool UnescapeJsonString(absl::string_view literal, std::string* out);

// Appends the inside of a JSON string literal holding `s` (no quotes):
// `"` and `\` escaped, \n \r \t as two-character escapes, other control
// characters and DEL as \u00XX, and every byte that is not part of
// well-formed UTF-8 as \ufffd. Any input gives valid JSON.
void AppendJsonEscaped(absl::string_view s, std::string* out);

// Appends `s` as a JSON string literal: quotes around AppendJsonEscaped.
// Any input is fine; bytes that are not UTF-8 become U+FFFD.
void AppendJsonString(absl::string_view s, std::string* out);

}  // namespace eventbus::common
