#include "capture/base/config_reader.h"

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace relaywatch::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Loads `text` as "test.yaml"; the document itself must be valid YAML.
Section Load(const std::string& text) {
  absl::StatusOr<Section> root = LoadString(text, "test.yaml");
  EXPECT_TRUE(root.ok()) << root.status();
  return root.ok() ? *root : Section(YAML::Node(), "", nullptr);
}

std::string Message(const absl::Status& status) {
  return std::string(status.message());
}

TEST(ConfigReader, AcceptsKnownKeys) {
  const Section capture = Load("capture:\n  snaplen: 100\n  bpf: tcp\n").Child("capture");
  EXPECT_TRUE(capture.present());
  EXPECT_EQ(capture.path(), "capture");
  EXPECT_TRUE(capture.CheckKeys({"snaplen", "bpf", "workers"}).ok());
}

TEST(ConfigReader, RejectsUnknownKeyWithOneBasedLocation) {
  const Section capture = Load("capture:\n  snaplen: 100\n  bufer_size: 3\n").Child("capture");
  const absl::Status status = capture.CheckKeys({"snaplen", "buffer_size"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  // The offending key sits on line 3, column 3 (1-based).
  EXPECT_THAT(Message(status), StartsWith("test.yaml:3:3: capture.bufer_size: unknown key"));
  EXPECT_THAT(Message(status), HasSubstr("snaplen, buffer_size"));
}

TEST(ConfigReader, RejectsUnknownTopLevelKey) {
  const Section root = Load("capture: {}\noutputz: {}\n");
  const absl::Status status = root.CheckKeys({"capture", "outputs"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), StartsWith("test.yaml:2:1: outputz: unknown key"));
}

TEST(ConfigReader, RejectsDuplicateKeyNamingBothLocations) {
  // yaml-cpp keeps both entries and returns the first; a silent override must not happen.
  const Section flows =
      Load("flows:\n  max_flows: 2048\n  closed_timeout: 5s\n  max_flows: 4096\n").Child("flows");
  const absl::Status status = flows.CheckKeys({"max_flows", "closed_timeout"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(status), "test.yaml:4:3: flows.max_flows: duplicate key (first at 2:3)");
}

TEST(ConfigReader, UnknownDuplicatedKeyReportedAtFirstOccurrence) {
  const absl::Status status = Load("a: 1\na: 2\n").CheckKeys({"b"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), StartsWith("test.yaml:1:1: a: unknown key"));
}

TEST(ConfigReader, RejectsNonMappingSection) {
  const Section capture = Load("capture: 5\n").Child("capture");
  const absl::Status status = capture.CheckKeys({"snaplen"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), StartsWith("test.yaml:1:10: capture: expected a mapping"));
}

TEST(ConfigReader, RejectsNonScalarKey) {
  const absl::Status status = Load("? [a, b]\n: 1\n").CheckKeys({"a"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("keys must be plain names"));
}

TEST(ConfigReader, ReadsTypedValues) {
  const Section s = Load(
                        "s:\n"
                        "  n: 42\n"
                        "  on: true\n"
                        "  off: false\n"
                        "  ratio: 0.25\n"
                        "  name: eth0\n"
                        "  mode: tcp\n"
                        "  wait: 1m30s\n"
                        "  list: [a, b]\n")
                        .Child("s");
  EXPECT_EQ(*s.Uint("n", 7, 0, 100), 42u);
  EXPECT_EQ(*s.Bool("on", false), true);
  EXPECT_EQ(*s.Bool("off", true), false);
  EXPECT_DOUBLE_EQ(*s.Double("ratio", 1.0, 0.0, 1.0), 0.25);
  EXPECT_EQ(*s.String("name", "x"), "eth0");
  EXPECT_EQ(*s.Enum("mode", "udp", {"udp", "tcp"}), "tcp");
  EXPECT_EQ(*s.Duration("wait", absl::Seconds(1), absl::ZeroDuration(), absl::Hours(1)),
            absl::Seconds(90));
  EXPECT_THAT(*s.StringList("list", {}), ElementsAre("a", "b"));
}

TEST(ConfigReader, RejectsStringWhereIntegerExpected) {
  const Section capture = Load("capture:\n  snaplen: lots\n").Child("capture");
  const absl::StatusOr<std::uint64_t> v = capture.Uint("snaplen", 65535, 64, 262144);
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(v.status()),
            "test.yaml:2:12: capture.snaplen: expected an integer in [64, 262144], got \"lots\"");
}

TEST(ConfigReader, RejectsIntegerOutOfRange) {
  const Section capture = Load("capture:\n  snaplen: 10\n  workers: 65\n").Child("capture");
  const absl::StatusOr<std::uint64_t> low = capture.Uint("snaplen", 65535, 64, 262144);
  EXPECT_EQ(low.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(low.status()), StartsWith("test.yaml:2:12: capture.snaplen:"));
  EXPECT_THAT(Message(low.status()), HasSubstr("got \"10\""));
  const absl::StatusOr<std::uint64_t> high = capture.Uint("workers", 0, 0, 64);
  EXPECT_EQ(high.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(high.status()), StartsWith("test.yaml:3:12: capture.workers:"));
  // The bounds themselves are accepted.
  const Section edges = Load("a: 64\nb: 262144\n");
  EXPECT_EQ(*edges.Uint("a", 0, 64, 262144), 64u);
  EXPECT_EQ(*edges.Uint("b", 0, 64, 262144), 262144u);
}

TEST(ConfigReader, RejectsNegativeAndOverflowingIntegers) {
  const Section s = Load("neg: -5\nbig: 18446744073709551616\nfrac: 1.5\n");
  EXPECT_FALSE(s.Uint("neg", 0, 0, 100).ok());
  EXPECT_FALSE(s.Uint("big", 0, 0, UINT64_MAX).ok());
  EXPECT_FALSE(s.Uint("frac", 0, 0, 100).ok());
  EXPECT_THAT(Message(s.Uint("neg", 0, 0, 100).status()), StartsWith("test.yaml:1:6: neg:"));
}

TEST(ConfigReader, RejectsMappingWhereScalarExpected) {
  const Section s = Load("s:\n  n:\n    deep: 1\n  name: [x]\n").Child("s");
  const absl::StatusOr<std::uint64_t> n = s.Uint("n", 0, 0, 10);
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(n.status()), StartsWith("test.yaml:3:5: s.n: expected an integer"));
  const absl::StatusOr<std::string> name = s.String("name", "");
  EXPECT_EQ(name.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(name.status()), StartsWith("test.yaml:4:9: s.name: expected a string"));
}

TEST(ConfigReader, BoolAcceptsOnlyTrueAndFalse) {
  // YAML 1.1 spellings are refused so "yes" in a bool field is a visible error.
  const Section s = Load("a: yes\nb: 1\n");
  const absl::StatusOr<bool> a = s.Bool("a", false);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(a.status()), "test.yaml:1:4: a: expected true or false, got \"yes\"");
  EXPECT_FALSE(s.Bool("b", false).ok());
}

TEST(ConfigReader, RejectsNumberOutOfRangeAndNotANumber) {
  const Section s = Load("low: -0.5\nnan: nan\ntext: half\n");
  EXPECT_FALSE(s.Double("low", 0.5, 0.0, 1.0).ok());
  EXPECT_FALSE(s.Double("nan", 0.5, 0.0, 1.0).ok());
  const absl::StatusOr<double> text = s.Double("text", 0.5, 0.0, 1.0);
  EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(text.status()), StartsWith("test.yaml:3:7: text: expected a number"));
}

TEST(ConfigReader, RejectsValueOutsideEnum) {
  const Section syslog =
      Load("outputs:\n  syslog:\n    transport: tls\n").Child("outputs").Child("syslog");
  EXPECT_EQ(syslog.path(), "outputs.syslog");
  const absl::StatusOr<std::string> v = syslog.Enum("transport", "udp", {"udp", "tcp"});
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(v.status()),
            "test.yaml:3:16: outputs.syslog.transport: expected one of udp, tcp, got \"tls\"");
}

TEST(ConfigReader, RejectsBadDuration) {
  const Section flows = Load(
                            "flows:\n"
                            "  no_unit: 30\n"
                            "  words: 5 minutes\n"
                            "  too_long: 2h\n"
                            "  negative: -1s\n")
                            .Child("flows");
  const absl::Duration lo = absl::Seconds(1);
  const absl::Duration hi = absl::Hours(1);
  const absl::StatusOr<absl::Duration> no_unit = flows.Duration("no_unit", lo, lo, hi);
  EXPECT_EQ(no_unit.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(no_unit.status()), StartsWith("test.yaml:2:12: flows.no_unit:"));
  EXPECT_THAT(Message(no_unit.status()), HasSubstr("got \"30\""));
  EXPECT_THAT(Message(flows.Duration("words", lo, lo, hi).status()),
              StartsWith("test.yaml:3:10: flows.words:"));
  EXPECT_THAT(Message(flows.Duration("too_long", lo, lo, hi).status()),
              StartsWith("test.yaml:4:13: flows.too_long:"));
  EXPECT_FALSE(flows.Duration("negative", lo, absl::ZeroDuration(), hi).ok());
}

TEST(ConfigReader, RejectsScalarWhereListExpected) {
  const Section capture = Load("capture:\n  interfaces: eth0\n").Child("capture");
  const absl::StatusOr<std::vector<std::string>> v = capture.StringList("interfaces", {});
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(v.status()), "test.yaml:2:15: capture.interfaces: expected a list");
}

TEST(ConfigReader, RejectsNonStringListItem) {
  const Section capture =
      Load("capture:\n  interfaces:\n    - eth0\n    - {name: eth1}\n").Child("capture");
  const absl::StatusOr<std::vector<std::string>> v = capture.StringList("interfaces", {});
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(v.status()), "test.yaml:4:7: capture.interfaces: item 1: expected a string");
}

TEST(ConfigReader, AbsentSectionReturnsFallbacks) {
  const Section root = Load("capture:\n  snaplen: 100\n");
  const Section missing = root.Child("outputs").Child("syslog");
  EXPECT_FALSE(missing.present());
  EXPECT_EQ(missing.path(), "outputs.syslog");
  EXPECT_TRUE(missing.CheckKeys({"enabled"}).ok());
  EXPECT_FALSE(missing.Has("enabled"));
  EXPECT_EQ(*missing.Bool("enabled", true), true);
  EXPECT_EQ(*missing.Uint("port", 514, 1, 65535), 514u);
  EXPECT_DOUBLE_EQ(*missing.Double("ratio", 0.5, 0, 1), 0.5);
  EXPECT_EQ(*missing.String("address", "127.0.0.1:514"), "127.0.0.1:514");
  EXPECT_EQ(*missing.Enum("transport", "udp", {"udp", "tcp"}), "udp");
  EXPECT_EQ(*missing.Duration("wait", absl::Seconds(3), absl::ZeroDuration(), absl::Hours(1)),
            absl::Seconds(3));
  EXPECT_THAT(*missing.StringList("events", {"alert"}), ElementsAre("alert"));
}

TEST(ConfigReader, NullSectionAndNullValueBehaveAsAbsent) {
  const Section root = Load("capture:\noutputs:\n  port:\n");
  EXPECT_FALSE(root.Child("capture").present());
  EXPECT_TRUE(root.Child("capture").CheckKeys({"snaplen"}).ok());
  EXPECT_EQ(*root.Child("outputs").Uint("port", 514, 1, 65535), 514u);
}

TEST(ConfigReader, EmptyDocumentIsAnEmptyRoot) {
  const Section root = Load("");
  EXPECT_FALSE(root.present());
  EXPECT_TRUE(root.CheckKeys({"capture"}).ok());
  EXPECT_EQ(*root.Child("capture").Uint("snaplen", 65535, 64, 262144), 65535u);
}

TEST(ConfigReader, ReadingAbsentKeysDoesNotAddThem) {
  // A lookup through a non-const yaml-cpp node would insert the key and then fail CheckKeys.
  const Section s = Load("s:\n  a: 1\n").Child("s");
  EXPECT_FALSE(s.Has("b"));
  EXPECT_EQ(*s.Uint("c", 5, 0, 10), 5u);
  EXPECT_FALSE(s.At("d").IsDefined());
  EXPECT_TRUE(s.CheckKeys({"a"}).ok());
  EXPECT_EQ(s.node().size(), 1u);
}

TEST(ConfigReader, AssignmentRebindsInsteadOfWritingThrough) {
  // YAML::Node::operator= writes into the node it references; assigning a Section must only
  // change which mapping it views, never the document.
  const Section root = Load("a:\n  x: 1\nb:\n  y: 2\n");
  Section s = root.Child("a");
  s = root.Child("b");
  EXPECT_EQ(s.path(), "b");
  EXPECT_TRUE(s.Has("y"));
  EXPECT_TRUE(root.Child("a").Has("x"));
  EXPECT_FALSE(root.Child("a").Has("y"));
  EXPECT_TRUE(root.Child("a").CheckKeys({"x"}).ok());
}

TEST(ConfigReader, ErrorOnAbsentKeyPointsAtSection) {
  const Section s = Load("top: 1\ncapture:\n  snaplen: 100\n").Child("capture");
  const absl::Status status = s.Error(s.At("bpf"), "bpf", "is required");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(status), "test.yaml:3:3: capture.bpf: is required");
  EXPECT_EQ(Message(s.Error("bad section")), "test.yaml:3:3: capture: bad section");
}

TEST(ConfigReader, SyntaxErrorHasFileLineColumn) {
  const absl::StatusOr<Section> root = LoadString("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml");
  EXPECT_EQ(root.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(root.status()), ::testing::MatchesRegex("bad\\.yaml:[0-9]+:[0-9]+: .+"));
  // The unclosed flow sequence is reported at or after the line that opens it.
  const absl::StatusOr<Section> tab = LoadString("a: 1\nb:\n\t- x\n", "tab.yaml");
  EXPECT_EQ(tab.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(tab.status()), StartsWith("tab.yaml:3:"));
}

TEST(ConfigReader, SyntaxErrorLineIsOneBased) {
  // The second mapping key at a deeper indent is a syntax error located on line 2.
  const absl::StatusOr<Section> root = LoadString("a: b\n  c: d\n", "x.yaml");
  EXPECT_EQ(root.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(root.status()), StartsWith("x.yaml:2:"));
}

TEST(ConfigReader, TopLevelMustBeMapping) {
  const absl::StatusOr<Section> list = LoadString("- a\n- b\n", "list.yaml");
  EXPECT_EQ(list.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(list.status()), StartsWith("list.yaml:1:1: the top level must be a mapping"));
  const absl::StatusOr<Section> scalar = LoadString("\n\njust text\n", "s.yaml");
  EXPECT_THAT(Message(scalar.status()), StartsWith("s.yaml:3:1:"));
}

TEST(ConfigReader, LoadFileReportsMissingFile) {
  const absl::StatusOr<Section> root = LoadFile("/nonexistent/relaywatch-test.yaml");
  EXPECT_EQ(root.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(root.status()), HasSubstr("/nonexistent/relaywatch-test.yaml"));
}

TEST(ConfigReader, LoadFileUsesPathInErrors) {
  const std::string path = ::testing::TempDir() + "config_reader_test.yaml";
  {
    std::ofstream out(path);
    out << "capture:\n  snaplen: 100\n  snaplen: 200\n";
  }
  const absl::StatusOr<Section> root = LoadFile(path);
  ASSERT_TRUE(root.ok()) << root.status();
  EXPECT_EQ(root->file(), path);
  const absl::Status status = root->Child("capture").CheckKeys({"snaplen"});
  EXPECT_EQ(Message(status), path + ":3:3: capture.snaplen: duplicate key (first at 2:3)");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace relaywatch::config
