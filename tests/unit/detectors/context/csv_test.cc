#include "detectors/context/csv.h"

#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace relaywatch::detectors::context {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<CsvRecord> ReadAll(absl::string_view text, CsvLimits limits = {}) {
  CsvReader reader(text, "t.csv", limits);
  std::vector<CsvRecord> out;
  CsvRecord record;
  while (true) {
    absl::StatusOr<bool> more = reader.Next(record);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) {
      return out;
    }
    out.push_back(record);
  }
}

absl::Status FirstError(absl::string_view text, CsvLimits limits = {}) {
  CsvReader reader(text, "t.csv", limits);
  CsvRecord record;
  while (true) {
    absl::StatusOr<bool> more = reader.Next(record);
    if (!more.ok()) {
      return more.status();
    }
    if (!*more) {
      return absl::OkStatus();
    }
  }
}

TEST(CsvReader, SplitsRecordsAndFields) {
  const auto records = ReadAll("a,b,c\r\n1,,3\n4,5,6");
  ASSERT_EQ(records.size(), 3u);
  EXPECT_THAT(records[0].fields, ElementsAre("a", "b", "c"));
  EXPECT_THAT(records[1].fields, ElementsAre("1", "", "3"));
  EXPECT_THAT(records[2].fields, ElementsAre("4", "5", "6"));
  EXPECT_EQ(records[2].line, 3);
}

TEST(CsvReader, UnquotesRfc4180Fields) {
  const auto records = ReadAll("\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\"\nnext,\"\",x\n");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_THAT(records[0].fields, ElementsAre("a,b", "say \"hi\"", "two\nlines"));
  EXPECT_THAT(records[1].fields, ElementsAre("next", "", "x"));
  // The quoted line break moved the second record to line 3.
  EXPECT_EQ(records[1].line, 3);
}

TEST(CsvReader, SkipsEmptyLinesAndByteOrderMark) {
  const auto records = ReadAll(
      "\xef\xbb\xbf"
      "a,b\n\n\r\n1,2\n\n");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_THAT(records[0].fields, ElementsAre("a", "b"));
  EXPECT_EQ(records[1].line, 4);
}

TEST(CsvReader, KeepsTrailingEmptyField) {
  const auto records = ReadAll("a,b,\n");
  ASSERT_EQ(records.size(), 1u);
  EXPECT_THAT(records[0].fields, ElementsAre("a", "b", ""));
}

TEST(CsvReader, RejectsQuoteInUnquotedField) {
  const absl::Status status = FirstError("a,b\n1,x\"y\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("t.csv:2: field 2: quote inside"));
}

TEST(CsvReader, RejectsTextAfterClosingQuote) {
  EXPECT_THAT(std::string(FirstError("\"a\"b,c\n").message()),
              HasSubstr("t.csv:1: field 1: text after the closing quote"));
}

TEST(CsvReader, RejectsUnterminatedQuoteAtTheLineItOpened) {
  EXPECT_THAT(std::string(FirstError("a\nb,\"open\n\n\n").message()),
              HasSubstr("t.csv:2: field 2: quoted field opened here is never closed"));
}

TEST(CsvReader, EnforcesFieldLimits) {
  CsvLimits limits;
  limits.max_fields = 3;
  limits.max_field_bytes = 4;
  EXPECT_THAT(std::string(FirstError("a,b,c,d\n", limits).message()),
              HasSubstr("more than 3 fields"));
  EXPECT_THAT(std::string(FirstError("abcde\n", limits).message()),
              HasSubstr("field 1 is longer than 4 bytes"));
  EXPECT_THAT(std::string(FirstError("\"abcde\"\n", limits).message()),
              HasSubstr("field 1 is longer than 4 bytes"));
  EXPECT_TRUE(FirstError("abcd,\"ab\"\"\"\n", limits).ok());
}

}  // namespace
}  // namespace relaywatch::detectors::context
