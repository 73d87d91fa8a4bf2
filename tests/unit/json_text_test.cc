#include "common/json_text.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace eventbus::common {
namespace {

TEST(JsonTextTest, AcceptsJsonValues) {
  for (const char* text :
       {"{}", "[]", "0", "-0.5e+10", "1E3", "true", "false", "null", "\"\"",
        " {\"a\": [1, 2, {\"b\": null}], \"c\": \"\\u00e9\\n\"} ",
        "\"caf\xc3\xa9\"", "[\"\xf0\x9f\x98\x80\"]"}) {
    EXPECT_TRUE(IsStrictJson(text)) << text;
  }
}

TEST(JsonTextTest, RejectsWhatIsNotJson) {
  for (const char* text :
       {"", " ", "{'a':1}", "{a:1}", "[1,]", "{\"a\":1,}", "01", "1.", ".5",
        "+1", "tru", "nul", "\"\\x\"", "\"\\u12\"", "\"a", "[1] [2]",
        "{\"a\" 1}", "NaN", "\"tab\there\""}) {
    EXPECT_FALSE(IsStrictJson(text)) << text;
  }
  EXPECT_FALSE(IsStrictJson(std::string(10000, '[') + std::string(10000, ']')))
      << "nesting is bounded";
}

TEST(JsonTextTest, Utf8RejectsOverlongSurrogatesAndOutOfRange) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"));
  for (const char* bad : {"\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf",
                          "\xed\xa0\x80", "\xf0\x80\x80\xaf", "\xf4\x90\x80\x80",
                          "\xf5\x80\x80\x80", "\xff", "\x80", "\xc3", "\xe2\x82"}) {
    EXPECT_FALSE(IsValidUtf8(bad)) << testing::PrintToString(std::string(bad));
  }
}

TEST(JsonTextTest, ToValidUtf8ReplacesEachBadByte) {
  EXPECT_EQ(ToValidUtf8("plain \xc3\xa9"), "plain \xc3\xa9");
  EXPECT_EQ(ToValidUtf8("a\xff" "b"), "a\xef\xbf\xbd" "b");
  EXPECT_EQ(ToValidUtf8("\xe2\x82"), "\xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_TRUE(IsValidUtf8(ToValidUtf8("\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80")));
}

TEST(JsonTextTest, AppendJsonStringEscapes) {
  std::string out;
  AppendJsonString("a\"b\\c\nd\x01", &out);
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\nd\\u0001\"");
  EXPECT_TRUE(IsStrictJson(out));
}

TEST(JsonTextTest, AppendJsonStringTakesAnyInput) {
  std::string out;
  AppendJsonString("a\xff\x7f" "b", &out);
  EXPECT_EQ(out, "\"a\\ufffd\\u007fb\"");
  EXPECT_TRUE(IsStrictJson(out));
}

TEST(JsonTextTest, AppendJsonEscapedAppendsWithoutQuotes) {
  std::string out = "x";
  AppendJsonEscaped("plain / {text}", &out);
  EXPECT_EQ(out, "xplain / {text}");
  out.clear();
  AppendJsonEscaped("", &out);
  EXPECT_EQ(out, "");
}

TEST(JsonTextTest, AppendJsonEscapedEscapesControlCharactersAndDel) {
  std::string out;
  AppendJsonEscaped("q\" b\\ n\n r\r t\t \x01\x08\x0c\x1f\x7f", &out);
  EXPECT_EQ(out,
            R"(q\" b\\ n\n r\r t\t \u0001\u0008\u000c\u001f\u007f)");
  using namespace std::string_literals;  // for the \0
  out.clear();
  AppendJsonEscaped("a\0b"s, &out);
  EXPECT_EQ(out, R"(a\u0000b)");
}

TEST(JsonTextTest, AppendJsonEscapedKeepsValidUtf8) {
  // 2, 3 and 4 bytes, and the highest code point.
  const std::string text = "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf";
  std::string out;
  AppendJsonEscaped(text, &out);
  EXPECT_EQ(out, text);
}

TEST(JsonTextTest, AppendJsonEscapedReplacesEachInvalidByte) {
  const std::string r = "\\ufffd";
  // A stray continuation byte, a byte never in UTF-8, a truncated sequence,
  // an overlong '/', a surrogate, a code point above U+10FFFF, and a
  // sequence cut at the end.
  const struct {
    std::string in, want;
  } cases[] = {
      {"a\x80" "b", "a" + r + "b"},
      {"\xff", r},
      {"\xe2\x82 x", r + r + " x"},
      {"\xc0\xaf", r + r},
      {"\xed\xa0\x80", r + r + r},
      {"\xf4\x90\x80\x80", r + r + r + r},
      {"ok\xf0\x9f\x98", "ok" + r + r + r},
  };
  for (const auto& c : cases) {
    std::string out;
    AppendJsonEscaped(c.in, &out);
    EXPECT_EQ(out, c.want) << testing::PrintToString(c.in);
    std::string literal;
    AppendJsonString(c.in, &literal);
    std::string back;
    ASSERT_TRUE(UnescapeJsonString(literal, &back)) << literal;
    EXPECT_EQ(back, ToValidUtf8(c.in));
  }
}

TEST(JsonTextTest, SplitJsonObjectKeepsValueText) {
  std::vector<JsonMember> members;
  ASSERT_TRUE(SplitJsonObject(
      " { \"a\" : 12345678901234567891 , \"b\\u00e9\":{\"x\": [1, 2]},"
      "\"c\":\"s\\n\"}\t",
      &members));
  ASSERT_EQ(members.size(), 3u);
  EXPECT_EQ(members[0].name, "a");
  EXPECT_EQ(members[0].value, "12345678901234567891");
  EXPECT_EQ(members[1].name, "b\xc3\xa9");
  EXPECT_EQ(members[1].value, "{\"x\": [1, 2]}");
  EXPECT_EQ(members[2].name, "c");
  EXPECT_EQ(members[2].value, "\"s\\n\"");
  EXPECT_TRUE(SplitJsonObject("{}", &members));
  EXPECT_TRUE(members.empty());
}

TEST(JsonTextTest, SplitJsonObjectRejectsWhatIsNotAnObject) {
  std::vector<JsonMember> members;
  for (const char* text :
       {"", "[]", "\"s\"", "{", "{\"a\"}", "{\"a\":1,}", "{\"a\":1} x",
        "{a:1}", "{\"\\ud800\":1}", "{\"a\":\"\xff\"}"}) {
    EXPECT_FALSE(SplitJsonObject(text, &members)) << text;
  }
}

TEST(JsonTextTest, UnescapeJsonString) {
  std::string out;
  ASSERT_TRUE(UnescapeJsonString(
      R"("q\" b\\ s\/ \b\f\n\r\t \u0041\u00e9\u20ac \ud83d\ude00 \u0000")",
      &out));
  using namespace std::string_literals;  // for the \0 at the end
  const std::string want =
      "q\" b\\ s/ \b\f\n\r\t A\xc3\xa9\xe2\x82\xac \xf0\x9f\x98\x80 \0"s;
  EXPECT_EQ(out, want);
  EXPECT_TRUE(IsValidUtf8(out));
  for (const char* bad : {R"("\ud800")", R"("\udc00")", R"("\ud83d\u0041")",
                          R"("\ud83d)", "no quotes", R"("a" "b")"}) {
    EXPECT_FALSE(UnescapeJsonString(bad, &out)) << bad;
  }
}

}  // namespace
}  // namespace eventbus::common
