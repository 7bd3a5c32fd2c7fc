#include "daemon/sinks/jsonl_sink.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace relaywatch::sinks {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "jsonl_sink_test.XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string File(std::string_view name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  for (std::size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', start)) {
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

Event MakeEvent(std::string type, std::uint64_t flow_id) {
  Event e;
  e.event_type = std::move(type);
  e.ts = absl::FromUnixSeconds(1714990272);
  FlowRef f;
  f.flow_id = flow_id;
  f.src_ip = *IpAddress::Parse("10.0.0.1");
  f.dest_ip = *IpAddress::Parse("10.0.0.2");
  f.src_port = 40000;
  f.dest_port = 22;
  f.protocol = 6;
  e.flow = f;
  if (e.event_type == "alert") {
    e.alert = AlertInfo{9100001, "sig", "cat", 2, "remote_access"};
  } else {
    e.body = {{"app", "ssh"}};
  }
  return e;
}

TEST(JsonlSink, WritesOneCompactObjectPerLine) {
  TempDir dir;
  const std::string path = dir.File("eve.json");
  auto sink = JsonlSink::Open({.path = path, .events = {"alert", "remote_session"}});
  ASSERT_TRUE(sink.ok()) << sink.status();
  (*sink)->Write(MakeEvent("alert", 1));
  (*sink)->Write(MakeEvent("remote_session", 2));
  (*sink)->Flush();

  const std::string text = ReadAll(path);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  const std::vector<std::string> lines = Lines(text);
  ASSERT_EQ(lines.size(), 2u);
  for (const std::string& line : lines) {
    EXPECT_EQ(line.find('\n'), std::string::npos);
    EXPECT_EQ(line.find(": "), std::string::npos) << "pretty-printed: " << line;
  }
  const nlohmann::json first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["event_type"], "alert");
  EXPECT_EQ(first["flow_id"], 1);
  EXPECT_EQ(first["alert"]["signature_id"], 9100001);
  const nlohmann::json second = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(second["remote_session"]["app"], "ssh");
  EXPECT_EQ((*sink)->written(), 2u);
  EXPECT_EQ((*sink)->filtered(), 0u);
  EXPECT_EQ((*sink)->write_errors(), 0u);
}

TEST(JsonlSink, SkipsAndCountsEventTypesNotConfigured) {
  TempDir dir;
  const std::string path = dir.File("eve.json");
  auto sink = JsonlSink::Open({.path = path, .events = {"alert"}});
  ASSERT_TRUE(sink.ok()) << sink.status();
  (*sink)->Write(MakeEvent("remote_session", 1));
  (*sink)->Write(MakeEvent("alert", 2));
  (*sink)->Write(MakeEvent("flow", 3));
  (*sink)->Flush();
  EXPECT_EQ(Lines(ReadAll(path)).size(), 1u);
  EXPECT_EQ((*sink)->written(), 1u);
  EXPECT_EQ((*sink)->filtered(), 2u);
}

TEST(JsonlSink, AppendsToExistingFileWithMode0640) {
  TempDir dir;
  const std::string path = dir.File("eve.json");
  const mode_t old_umask = ::umask(022);
  {
    auto sink = JsonlSink::Open({.path = path});
    ASSERT_TRUE(sink.ok()) << sink.status();
    (*sink)->Write(MakeEvent("alert", 1));
  }  // The destructor flushes.
  ::umask(old_umask);
  struct stat st = {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  {
    auto sink = JsonlSink::Open({.path = path});
    ASSERT_TRUE(sink.ok()) << sink.status();
    (*sink)->Write(MakeEvent("alert", 2));
  }
  const std::vector<std::string> lines = Lines(ReadAll(path));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["flow_id"], 2);
}

TEST(JsonlSink, OpenFailsWithThePathInTheMessage) {
  auto sink = JsonlSink::Open({.path = "/nonexistent-dir-for-test/eve.json"});
  ASSERT_FALSE(sink.ok());
  EXPECT_EQ(sink.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(sink.status().message().find("/nonexistent-dir-for-test/eve.json"),
            absl::string_view::npos);
  EXPECT_FALSE(JsonlSink::Open({.path = ""}).ok());
}

TEST(JsonlSink, ReopenAfterRotationWritesToTheNewFile) {
  TempDir dir;
  const std::string path = dir.File("eve.json");
  const std::string rotated = dir.File("eve.json.1");
  auto sink = JsonlSink::Open({.path = path});
  ASSERT_TRUE(sink.ok()) << sink.status();
  (*sink)->Write(MakeEvent("alert", 1));
  // logrotate renames the file, then sends SIGHUP.
  fs::rename(path, rotated);
  (*sink)->Write(MakeEvent("alert", 2));  // Still goes to the renamed file.
  ASSERT_TRUE((*sink)->Reopen().ok());
  (*sink)->Write(MakeEvent("alert", 3));
  (*sink)->Flush();

  const std::vector<std::string> old_lines = Lines(ReadAll(rotated));
  ASSERT_EQ(old_lines.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(old_lines[1])["flow_id"], 2);
  const std::vector<std::string> new_lines = Lines(ReadAll(path));
  ASSERT_EQ(new_lines.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(new_lines[0])["flow_id"], 3);
}

TEST(JsonlSink, FailedReopenKeepsWritingToTheOldFile) {
  TempDir dir;
  const std::string sub = dir.File("sub");
  fs::create_directory(sub);
  const std::string path = sub + "/eve.json";
  auto sink = JsonlSink::Open({.path = path});
  ASSERT_TRUE(sink.ok()) << sink.status();
  const std::string moved = dir.File("moved");
  fs::rename(sub, moved);
  EXPECT_FALSE((*sink)->Reopen().ok());
  (*sink)->Write(MakeEvent("alert", 1));
  (*sink)->Flush();
  EXPECT_EQ(Lines(ReadAll(moved + "/eve.json")).size(), 1u);
  EXPECT_EQ((*sink)->write_errors(), 0u);
}

TEST(JsonlSink, InvalidUtf8FromPacketsDoesNotThrow) {
  TempDir dir;
  const std::string path = dir.File("eve.json");
  auto sink = JsonlSink::Open({.path = path, .events = {"remote_session"}});
  ASSERT_TRUE(sink.ok()) << sink.status();
  Event e = MakeEvent("remote_session", 7);
  e.body = {{"app", std::string("bad\xff\xc0name")}};
  ASSERT_NO_THROW((*sink)->Write(e));
  (*sink)->Flush();
  const std::vector<std::string> lines = Lines(ReadAll(path));
  ASSERT_EQ(lines.size(), 1u);
  const nlohmann::json j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["remote_session"]["app"], "bad\xEF\xBF\xBD\xEF\xBF\xBDname");
  EXPECT_EQ((*sink)->written(), 1u);
  EXPECT_EQ((*sink)->write_errors(), 0u);
}

TEST(JsonlSink, WriteErrorsAreCountedNotThrown) {
  if (::access("/dev/full", W_OK) != 0) {
    GTEST_SKIP() << "/dev/full not available";
  }
  auto sink = JsonlSink::Open({.path = "/dev/full"});
  ASSERT_TRUE(sink.ok()) << sink.status();
  ASSERT_NO_THROW((*sink)->Write(MakeEvent("alert", 1)));
  ASSERT_NO_THROW((*sink)->Flush());  // ENOSPC surfaces here, at the writev().
  EXPECT_GE((*sink)->write_errors(), 1u);
  // Held, not lost: a later flush that goes through writes it.
  EXPECT_EQ((*sink)->pending(), 1u);
  EXPECT_EQ((*sink)->dropped(), 0u);
  EXPECT_EQ((*sink)->undelivered(), 1u);
}

// RLIMIT_FSIZE makes a file refuse to grow past a size, as a full disk does (EFBIG, after
// a short write of what fits), without root or a filesystem of its own.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) : old_handler_(std::signal(SIGXFSZ, SIG_IGN)) {
    ::getrlimit(RLIMIT_FSIZE, &old_);
    Set(bytes);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    std::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;
  void Set(rlim_t bytes) {
    rlimit limit = old_;
    limit.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &limit);
  }
  void Lift() { ::setrlimit(RLIMIT_FSIZE, &old_); }

 private:
  rlimit old_ = {};
  void (*old_handler_)(int);
};

std::vector<std::uint64_t> FlowIds(const std::string& path) {
  std::vector<std::uint64_t> ids;
  for (const std::string& line : Lines(ReadAll(path))) {
    ids.push_back(nlohmann::json::parse(line)["flow_id"].get<std::uint64_t>());
  }
  return ids;
}

// Writes alert 1 whole, then alert 2 into a file that takes only its head; the file stays
// that way while the returned limit lives.
std::unique_ptr<FileSizeLimit> WriteALineAndTheHeadOfAnother(JsonlSink& sink,
                                                             const std::string& path) {
  sink.Write(MakeEvent("alert", 1));
  sink.Flush();
  auto limit = std::make_unique<FileSizeLimit>(fs::file_size(path) + 40);
  sink.Write(MakeEvent("alert", 2));
  sink.Flush();
  return limit;
}

TEST(JsonlSink, HoldsWhatTheFileRefusesAndWritesItWholeLater) {
  TempDir dir;
  const std::string path = dir.File("eve.json");
  auto sink = JsonlSink::Open({.path = path, .events = {"alert"}});
  ASSERT_TRUE(sink.ok()) << sink.status();
  (*sink)->Write(MakeEvent("alert", 1));
  (*sink)->Flush();
  const std::size_t first_line = fs::file_size(path);
  {
    FileSizeLimit limit(first_line + 40);  // Room for the head of the next line only.
    (*sink)->Write(MakeEvent("alert", 2));
    (*sink)->Write(MakeEvent("alert", 3));
    (*sink)->Flush();
    EXPECT_GE((*sink)->write_errors(), 1u);
    EXPECT_EQ((*sink)->pending(), 2u);
    EXPECT_EQ((*sink)->written(), 1u);
    EXPECT_EQ(fs::file_size(path), first_line + 40);  // A line's head went out.
    (*sink)->Flush();                                 // Still refused: nothing changes.
    EXPECT_EQ((*sink)->pending(), 2u);
    limit.Lift();  // Room again.
    (*sink)->Flush();
  }
  EXPECT_EQ((*sink)->pending(), 0u);
  EXPECT_EQ((*sink)->written(), 3u);
  EXPECT_EQ((*sink)->dropped(), 0u);
  EXPECT_EQ((*sink)->undelivered(), 0u);
  EXPECT_EQ(FlowIds(path), (std::vector<std::uint64_t>{1, 2, 3}));
}

TEST(JsonlSink, AFullHoldDropsRecordsBeforeAlerts) {
  TempDir dir;
  const std::string path = dir.File("eve.json");
  auto sink = JsonlSink::Open({.path = path, .events = {"alert", "flow"}, .max_pending = 3});
  ASSERT_TRUE(sink.ok()) << sink.status();
  {
    FileSizeLimit limit(0);
    (*sink)->Write(MakeEvent("flow", 1));
    (*sink)->Write(MakeEvent("alert", 2));
    (*sink)->Write(MakeEvent("flow", 3));
    (*sink)->Write(MakeEvent("alert", 4));  // Full: flow 1 goes.
    (*sink)->Write(MakeEvent("alert", 5));  // Flow 3 goes.
    (*sink)->Write(MakeEvent("flow", 6));   // Only alerts held: the newcomer goes.
    (*sink)->Flush();
    EXPECT_EQ((*sink)->dropped(), 3u);
    EXPECT_EQ((*sink)->pending(), 3u);
    EXPECT_EQ((*sink)->undelivered(), 6u - 3u + 3u);
    limit.Lift();
    (*sink)->Flush();
  }
  EXPECT_EQ(FlowIds(path), (std::vector<std::uint64_t>{2, 4, 5}));
  EXPECT_EQ((*sink)->undelivered(), 3u);  // The drops stay counted.
}

TEST(JsonlSink, ALineTornAtTheEndIsCutOffTheFile) {
  TempDir dir;
  const std::string path = dir.File("eve.json");
  {
    auto sink = JsonlSink::Open({.path = path});
    ASSERT_TRUE(sink.ok()) << sink.status();
    const auto limit = WriteALineAndTheHeadOfAnother(**sink, path);
    EXPECT_EQ((*sink)->undelivered(), 1u);
    sink->reset();  // Its last try is refused too.
  }
  const std::string text = ReadAll(path);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(FlowIds(path), (std::vector<std::uint64_t>{1}));
}

TEST(JsonlSink, ALineTornByRotationGoesWholeToTheNewFile) {
  TempDir dir;
  const std::string path = dir.File("eve.json");
  const std::string rotated = dir.File("eve.json.1");
  auto sink = JsonlSink::Open({.path = path});
  ASSERT_TRUE(sink.ok()) << sink.status();
  {
    const auto limit = WriteALineAndTheHeadOfAnother(**sink, path);
    fs::rename(path, rotated);
    ASSERT_TRUE((*sink)->Reopen().ok());
    limit->Lift();
    (*sink)->Flush();
  }
  EXPECT_EQ(FlowIds(rotated), (std::vector<std::uint64_t>{1}));
  EXPECT_EQ(FlowIds(path), (std::vector<std::uint64_t>{2}));
  EXPECT_EQ((*sink)->undelivered(), 0u);
}

TEST(JsonlSink, DashMeansStdout) {
  auto sink = JsonlSink::Open({.path = "-"});
  ASSERT_TRUE(sink.ok()) << sink.status();
  EXPECT_EQ((*sink)->name(), "jsonl");
  // stdout is never reopened; Reopen is a no-op that succeeds.
  EXPECT_TRUE((*sink)->Reopen().ok());
}

}  // namespace
}  // namespace relaywatch::sinks
