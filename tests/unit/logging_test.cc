#include "server/logging.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "spdlog/logger.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"

namespace eventbus::server {
namespace {

using ::testing::HasSubstr;

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// A strict parser for what the JSON formatter emits: one object whose values
// are strings. Rejects raw control characters, bad escapes and invalid
// UTF-8. Returns the decoded members, or nullopt if `text` is not such JSON.
class FlatJsonParser {
 public:
  explicit FlatJsonParser(const std::string& text) : text_(text) {}

  std::optional<std::map<std::string, std::string>> Parse() {
    std::map<std::string, std::string> members;
    if (!Consume('{')) return std::nullopt;
    if (Consume('}')) return AtEnd() ? std::optional(members) : std::nullopt;
    do {
      std::optional<std::string> key = String();
      if (!key || !Consume(':')) return std::nullopt;
      std::optional<std::string> value = String();
      if (!value || !members.emplace(*key, *value).second) return std::nullopt;
    } while (Consume(','));
    if (!Consume('}') || !AtEnd()) return std::nullopt;
    return members;
  }

 private:
  bool AtEnd() const { return pos_ == text_.size(); }
  bool Consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  std::optional<uint32_t> Hex4() {
    if (pos_ + 4 > text_.size()) return std::nullopt;
    uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_++];
      value <<= 4;
      if (c >= '0' && c <= '9') value |= c - '0';
      else if (c >= 'a' && c <= 'f') value |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') value |= c - 'A' + 10;
      else return std::nullopt;
    }
    return value;
  }
  std::optional<std::string> String() {
    if (!Consume('"')) return std::nullopt;
    std::string out;
    while (pos_ < text_.size()) {
      auto c = static_cast<unsigned char>(text_[pos_++]);
      if (c == '"') return out;
      if (c < 0x20) return std::nullopt;
      if (c >= 0x80) {
        size_t length = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
                        : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (length == 0 || pos_ + length - 1 > text_.size()) {
          return std::nullopt;
        }
        out += static_cast<char>(c);
        for (size_t i = 1; i < length; ++i) {
          auto next = static_cast<unsigned char>(text_[pos_++]);
          if ((next & 0xC0) != 0x80) return std::nullopt;
          out += static_cast<char>(next);
        }
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (pos_ == text_.size()) return std::nullopt;
      switch (text_[pos_++]) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::optional<uint32_t> cp = Hex4();
          if (!cp) return std::nullopt;
          if (*cp >= 0xD800 && *cp <= 0xDBFF) {
            if (!Consume('\\') || !Consume('u')) return std::nullopt;
            std::optional<uint32_t> low = Hex4();
            if (!low || *low < 0xDC00 || *low > 0xDFFF) return std::nullopt;
            *cp = 0x10000 + ((*cp - 0xD800) << 10) + (*low - 0xDC00);
          } else if (*cp >= 0xDC00 && *cp <= 0xDFFF) {
            return std::nullopt;
          }
          AppendUtf8(*cp, out);
          break;
        }
        default:
          return std::nullopt;
      }
    }
    return std::nullopt;
  }

  const std::string& text_;
  size_t pos_ = 0;
};

class LoggingTest : public ::testing::Test {
 protected:
  LoggingTest()
      : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)),
        logger_("eventbus", sink_) {}

  std::vector<std::string> Lines() {
    std::vector<std::string> lines = absl::StrSplit(out_.str(), '\n');
    EXPECT_FALSE(lines.empty());
    EXPECT_EQ(lines.back(), "") << "output does not end with a newline";
    lines.pop_back();
    return lines;
  }

  std::map<std::string, std::string> ParseJsonLine(const std::string& line) {
    std::optional<std::map<std::string, std::string>> members =
        FlatJsonParser(line).Parse();
    EXPECT_TRUE(members.has_value()) << "not valid JSON: " << line;
    return members.value_or(std::map<std::string, std::string>{});
  }

  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
  spdlog::logger logger_;
};

TEST_F(LoggingTest, JsonLineHasTheFields) {
  ASSERT_TRUE(ConfigureLogger(logger_, "info", "json").ok());
  logger_.info("hello {}", "world");
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  std::map<std::string, std::string> members = ParseJsonLine(lines[0]);
  EXPECT_EQ(members.size(), 4u);
  EXPECT_EQ(members["level"], "info");
  EXPECT_EQ(members["logger"], "eventbus");
  EXPECT_EQ(members["msg"], "hello world");
  EXPECT_TRUE(std::regex_match(
      members["time"],
      std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)")))
      << members["time"];
  EXPECT_EQ(lines[0].rfind("{\"time\":\"", 0), 0u) << lines[0];
}

TEST_F(LoggingTest, JsonEscapesQuotesBackslashesAndControlCharacters) {
  ASSERT_TRUE(ConfigureLogger(logger_, "trace", "json").ok());
  const std::string message =
      "he said \"hi\"\nsecond line\r\n\ttab \\ back\\slash \x01\x1f\x7f "
      "{braces} / \xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80";
  logger_.warn("{}", message);
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u) << "a message with newlines must stay one line";
  EXPECT_THAT(lines[0],
              HasSubstr(R"(he said \"hi\"\nsecond line\r\n)"
                        R"(\ttab \\ back\\slash \u0001\u001f\u007f)"));
  std::map<std::string, std::string> members = ParseJsonLine(lines[0]);
  EXPECT_EQ(members["msg"], message);
  EXPECT_EQ(members["level"], "warn");
}

TEST_F(LoggingTest, JsonReplacesInvalidUtf8) {
  ASSERT_TRUE(ConfigureLogger(logger_, "info", "json").ok());
  // A stray continuation byte, a truncated sequence, an overlong '/', a
  // surrogate and a code point above U+10FFFF.
  logger_.error("{}", std::string("a\x80 b\xe2\x9c c\xc0\xaf d\xed\xa0\x80 "
                                  "e\xf4\x90\x80\x80 f"));
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  std::map<std::string, std::string> members = ParseJsonLine(lines[0]);
  const std::string r = "\xef\xbf\xbd";  // U+FFFD
  EXPECT_EQ(members["msg"], "a" + r + " b" + r + r + " c" + r + r + " d" + r +
                                r + r + " e" + r + r + r + r + " f");
  EXPECT_EQ(members["level"], "error");
}

TEST_F(LoggingTest, JsonOneObjectPerLineAndLevelNames) {
  ASSERT_TRUE(ConfigureLogger(logger_, "trace", "json").ok());
  logger_.trace("t");
  logger_.debug("d");
  logger_.info("i");
  logger_.warn("w");
  logger_.error("e");
  logger_.critical("c");
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 6u);
  std::vector<std::string> levels;
  for (const std::string& line : lines) {
    levels.push_back(ParseJsonLine(line)["level"]);
  }
  EXPECT_THAT(levels, ::testing::ElementsAre("trace", "debug", "info", "warn",
                                             "error", "critical"));
}

TEST_F(LoggingTest, LevelFilters) {
  ASSERT_TRUE(ConfigureLogger(logger_, "warn", "text").ok());
  logger_.info("dropped");
  logger_.warn("kept");
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_THAT(lines[0], HasSubstr("kept"));

  out_.str("");
  ASSERT_TRUE(ConfigureLogger(logger_, "off", "text").ok());
  logger_.critical("dropped");
  EXPECT_EQ(out_.str(), "");
}

TEST_F(LoggingTest, TextFormat) {
  ASSERT_TRUE(ConfigureLogger(logger_, "info", "text").ok());
  logger_.info("hello \"text\"");
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(std::regex_match(
      lines[0],
      std::regex(R"(\[\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3})"
                 R"([+-]\d{2}:\d{2}\] \[info\] hello "text")")))
      << lines[0];
}

TEST_F(LoggingTest, BadLevelOrFormatChangesNothing) {
  ASSERT_TRUE(ConfigureLogger(logger_, "info", "json").ok());

  absl::Status status = ConfigureLogger(logger_, "verbose", "text");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("\"verbose\""));
  EXPECT_THAT(std::string(status.message()), HasSubstr("log level"));

  status = ConfigureLogger(logger_, "debug", "xml");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("\"xml\""));
  EXPECT_THAT(std::string(status.message()), HasSubstr("log format"));

  EXPECT_EQ(logger_.level(), spdlog::level::info);
  logger_.info("still json");
  std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(ParseJsonLine(lines[0])["msg"], "still json");
}

TEST(ConfigureLoggingTest, SetsTheDefaultLogger) {
  ASSERT_TRUE(ConfigureLogging("debug", "json").ok());
  std::shared_ptr<spdlog::logger> logger = spdlog::default_logger();
  EXPECT_EQ(logger->name(), "eventbus");
  EXPECT_EQ(logger->level(), spdlog::level::debug);
  EXPECT_EQ(spdlog::get("eventbus"), logger);

  EXPECT_EQ(ConfigureLogging("loud", "json").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ConfigureLogging("info", "yaml").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(spdlog::default_logger(), logger);
  EXPECT_EQ(logger->level(), spdlog::level::debug);

  ASSERT_TRUE(ConfigureLogging("warn", "text").ok());
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::warn);
}

}  // namespace
}  // namespace eventbus::server
