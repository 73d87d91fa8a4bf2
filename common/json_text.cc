#include "common/json_text.h"

#include <cstdint>
#include <utility>

namespace eventbus::common {
namespace {

// A recursive-descent recognizer over `s_`; depth-limited so hostile input
// cannot exhaust the stack.
class JsonRecognizer {
 public:
  explicit JsonRecognizer(absl::string_view s) : s_(s) {}

  bool Document() {
    SkipSpace();
    if (!Value(0)) return false;
    SkipSpace();
    return i_ == s_.size();
  }

  // Document() for an object, recording each member's name literal and
  // value text.
  bool ObjectDocument(
      std::vector<std::pair<absl::string_view, absl::string_view>>* members) {
    SkipSpace();
    if (!Peek('{')) return false;
    SkipSpace();
    if (!Peek('}')) {
      while (true) {
        SkipSpace();
        const size_t name = i_;
        if (i_ >= s_.size() || s_[i_] != '"' || !String()) return false;
        const size_t name_end = i_;
        SkipSpace();
        if (!Peek(':')) return false;
        SkipSpace();
        const size_t value = i_;
        if (!Value(1)) return false;
        members->emplace_back(s_.substr(name, name_end - name),
                              s_.substr(value, i_ - value));
        SkipSpace();
        if (Peek('}')) break;
        if (!Peek(',')) return false;
      }
    }
    SkipSpace();
    return i_ == s_.size();
  }

  // Document() for a string.
  bool StringDocument() {
    return i_ < s_.size() && s_[i_] == '"' && String() && i_ == s_.size();
  }

 private:
  static constexpr int kMaxDepth = 512;

  bool Value(int depth) {
    if (depth > kMaxDepth || i_ >= s_.size()) return false;
    switch (s_[i_]) {
      case '{': return Object(depth);
      case '[': return Array(depth);
      case '"': return String();
      case 't': return Literal("true");
      case 'f': return Literal("false");
      case 'n': return Literal("null");
      default: return Number();
    }
  }

  bool Object(int depth) {
    ++i_;
    SkipSpace();
    if (Peek('}')) return true;
    while (true) {
      SkipSpace();
      if (i_ >= s_.size() || s_[i_] != '"' || !String()) return false;
      SkipSpace();
      if (!Peek(':')) return false;
      SkipSpace();
      if (!Value(depth + 1)) return false;
      SkipSpace();
      if (Peek('}')) return true;
      if (!Peek(',')) return false;
    }
  }

  bool Array(int depth) {
    ++i_;
    SkipSpace();
    if (Peek(']')) return true;
    while (true) {
      SkipSpace();
      if (!Value(depth + 1)) return false;
      SkipSpace();
      if (Peek(']')) return true;
      if (!Peek(',')) return false;
    }
  }

  bool String() {
    ++i_;
    while (i_ < s_.size()) {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return false;
      if (c == '\\') {
        if (++i_ >= s_.size()) return false;
        const char e = s_[i_];
        if (e == 'u') {
          for (int k = 1; k <= 4; ++k) {
            if (i_ + k >= s_.size() || !IsHex(s_[i_ + k])) return false;
          }
          i_ += 5;
          continue;
        }
        if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' &&
            e != 'n' && e != 'r' && e != 't') {
          return false;
        }
      }
      ++i_;
    }
    return false;
  }

  bool Number() {
    const size_t start = i_;
    Peek('-');
    if (Peek('0')) {
      // no leading zeros
    } else if (!Digits()) {
      return false;
    }
    if (Peek('.') && !Digits()) return false;
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (!Peek('+')) Peek('-');
      if (!Digits()) return false;
    }
    return i_ > start;
  }

  bool Digits() {
    const size_t start = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
    return i_ > start;
  }

  bool Literal(absl::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  bool Peek(char c) {
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }

  void SkipSpace() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' ||
                              s_[i_] == '\n' || s_[i_] == '\r')) {
      ++i_;
    }
  }

  static bool IsHex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
           (c >= 'A' && c <= 'F');
  }

  absl::string_view s_;
  size_t i_ = 0;
};

}  // namespace

namespace {

// The length of the well-formed UTF-8 sequence at s[i] (i < s.size()), or
// 0 when there is none.
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xbf;  // bounds of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    n = 1;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 2;
    if (c == 0xe0) lo = 0xa0;  // overlong
    if (c == 0xed) hi = 0x9f;  // surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 3;
    if (c == 0xf0) lo = 0x90;  // overlong
    if (c == 0xf4) hi = 0x8f;  // above U+10FFFF
  } else {
    return 0;
  }
  if (i + n >= s.size()) return 0;
  const auto c1 = static_cast<unsigned char>(s[i + 1]);
  if (c1 < lo || c1 > hi) return 0;
  for (size_t k = 2; k <= n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  return n + 1;
}

}  // namespace

bool IsValidUtf8(absl::string_view s) {
  // ASCII, the common case (every header and most values a Subscribe
  // stream checks), eight bytes at a time.
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, s.data() + i, sizeof(word));
    if ((word & 0x8080808080808080ull) != 0) break;
  }
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string ToValidUtf8(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

bool IsStrictJson(absl::string_view text) {
  return IsValidUtf8(text) && JsonRecognizer(text).Document();
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

// The four hex digits at s[i] (checked by the recognizer).
uint32_t Hex4(absl::string_view s, size_t i) {
  uint32_t v = 0;
  for (size_t k = 0; k < 4; ++k) v = v * 16 + static_cast<uint32_t>(HexValue(s[i + k]));
  return v;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Unescapes a literal the recognizer accepted.
bool UnescapeRecognized(absl::string_view literal, std::string* out) {
  out->clear();
  out->reserve(literal.size() - 2);
  const absl::string_view s = literal.substr(1, literal.size() - 2);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out->push_back(s[i]);
      continue;
    }
    const char e = s[++i];
    switch (e) {
      case 'b': out->push_back('\b'); break;
      case 'f': out->push_back('\f'); break;
      case 'n': out->push_back('\n'); break;
      case 'r': out->push_back('\r'); break;
      case 't': out->push_back('\t'); break;
      case 'u': {
        uint32_t cp = Hex4(s, i + 1);
        i += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return false;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (i + 6 >= s.size() || s[i + 1] != '\\' || s[i + 2] != 'u') {
            return false;
          }
          const uint32_t low = Hex4(s, i + 3);
          if (low < 0xDC00 || low > 0xDFFF) return false;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          i += 6;
        }
        AppendUtf8(cp, out);
        break;
      }
      default: out->push_back(e);  // " \ /
    }
  }
  return true;
}

}  // namespace

bool SplitJsonObject(absl::string_view text, std::vector<JsonMember>* members) {
  members->clear();
  if (!IsValidUtf8(text)) return false;
  std::vector<std::pair<absl::string_view, absl::string_view>> spans;
  if (!JsonRecognizer(text).ObjectDocument(&spans)) return false;
  members->resize(spans.size());
  for (size_t i = 0; i < spans.size(); ++i) {
    if (!UnescapeRecognized(spans[i].first, &(*members)[i].name)) return false;
    (*members)[i].value = spans[i].second;
  }
  return true;
}

bool UnescapeJsonString(absl::string_view literal, std::string* out) {
  return IsValidUtf8(literal) && JsonRecognizer(literal).StringDocument() &&
         UnescapeRecognized(literal, out);
}

void AppendJsonEscaped(absl::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      // A well-formed sequence is kept as it is; each byte of anything else
      // becomes U+FFFD.
      const size_t n = Utf8SequenceLength(s, i);
      if (n == 0) {
        out->append("\\ufffd");
        ++i;
      } else {
        out->append(s.data() + i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20 || c == 0x7f) {
          const char escaped[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
          out->append(escaped, sizeof(escaped));
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
}

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  AppendJsonEscaped(s, out);
  out->push_back('"');
}

}  // namespace eventbus::common
