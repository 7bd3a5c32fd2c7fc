#include "capture/base/config_reader.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#include "capture/base/status_macros.h"

namespace relaywatch::config {
namespace {

std::string JoinPath(absl::string_view path, absl::string_view key) {
  if (path.empty()) {
    return std::string(key);
  }
  return absl::StrCat(path, ".", key);
}

}  // namespace

Section::Section(YAML::Node node, std::string path, std::shared_ptr<const std::string> file)
    : node_(std::move(node)), path_(std::move(path)), file_(std::move(file)) {
  if (!file_) {
    file_ = std::make_shared<const std::string>("<config>");
  }
}

Section& Section::operator=(const Section& other) {
  node_.reset(other.node_);
  path_ = other.path_;
  file_ = other.file_;
  return *this;
}

bool Section::present() const { return node_.IsDefined() && !node_.IsNull(); }

absl::Status Section::Error(const YAML::Node& at, absl::string_view key,
                            absl::string_view message) const {
  YAML::Mark mark = at.IsDefined() ? at.Mark() : YAML::Mark::null_mark();
  if (mark.is_null() && node_.IsDefined()) {
    mark = node_.Mark();
  }
  const std::string where = key.empty() ? path_ : JoinPath(path_, key);
  std::string location = *file_;
  if (!mark.is_null()) {
    // yaml-cpp marks are 0-based; editors and compilers print 1-based.
    location = absl::StrCat(*file_, ":", mark.line + 1, ":", mark.column + 1);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(location, ": ", where.empty() ? "" : absl::StrCat(where, ": "), message));
}

absl::Status Section::Error(absl::string_view message) const {
  return Error(node_, "", message);
}

YAML::Node Section::At(absl::string_view key) const {
  if (!present() || !node_.IsMap()) {
    return YAML::Node(YAML::NodeType::Undefined);
  }
  // Lookup through the const overload so a missing key is not inserted.
  const YAML::Node& const_node = node_;
  YAML::Node found = const_node[std::string(key)];
  // A missing key yields an "invalid" node that throws on most uses; hand out a plain
  // undefined one instead.
  if (!found.IsDefined()) {
    return YAML::Node(YAML::NodeType::Undefined);
  }
  return found;
}

bool Section::Has(absl::string_view key) const {
  const YAML::Node n = At(key);
  return n.IsDefined() && !n.IsNull();
}

absl::Status Section::CheckKeys(std::initializer_list<absl::string_view> known) const {
  std::vector<std::string> list(known.begin(), known.end());
  return CheckKeys(list);
}

absl::Status Section::CheckKeys(const std::vector<std::string>& known) const {
  if (!present()) {
    return absl::OkStatus();
  }
  if (!node_.IsMap()) {
    return Error("expected a mapping of keys");
  }
  absl::flat_hash_map<std::string, YAML::Mark> seen;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    const YAML::Node key_node = it->first;
    if (!key_node.IsScalar()) {
      return Error(key_node, "", "keys must be plain names");
    }
    const std::string key = key_node.Scalar();
    if (auto [pos, inserted] = seen.emplace(key, key_node.Mark()); !inserted) {
      return Error(key_node, key,
                   absl::StrCat("duplicate key (first at ", pos->second.line + 1, ":",
                                pos->second.column + 1, ")"));
    }
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      return Error(key_node, key,
                   absl::StrCat("unknown key; expected one of: ", absl::StrJoin(known, ", ")));
    }
  }
  return absl::OkStatus();
}

Section Section::Child(absl::string_view key) const {
  return Section(At(key), JoinPath(path_, key), file_);
}

absl::StatusOr<std::string> Section::Scalar(absl::string_view key,
                                            absl::string_view expected) const {
  const YAML::Node n = At(key);
  if (!n.IsScalar()) {
    return Error(n, key, absl::StrCat("expected ", expected));
  }
  return n.Scalar();
}

absl::StatusOr<bool> Section::Bool(absl::string_view key, bool fallback) const {
  if (!Has(key)) {
    return fallback;
  }
  absl::StatusOr<std::string> text = Scalar(key, "true or false");
  if (!text.ok()) {
    return text.status();
  }
  if (*text == "true") {
    return true;
  }
  if (*text == "false") {
    return false;
  }
  return Error(At(key), key, absl::StrCat("expected true or false, got \"", *text, "\""));
}

absl::StatusOr<std::uint64_t> Section::Uint(absl::string_view key, std::uint64_t fallback,
                                            std::uint64_t min, std::uint64_t max) const {
  if (!Has(key)) {
    return fallback;
  }
  const std::string range = absl::StrCat("an integer in [", min, ", ", max, "]");
  absl::StatusOr<std::string> text = Scalar(key, range);
  if (!text.ok()) {
    return text.status();
  }
  std::uint64_t value = 0;
  if (!absl::SimpleAtoi(*text, &value) || value < min || value > max) {
    return Error(At(key), key, absl::StrCat("expected ", range, ", got \"", *text, "\""));
  }
  return value;
}

absl::StatusOr<double> Section::Double(absl::string_view key, double fallback, double min,
                                       double max) const {
  if (!Has(key)) {
    return fallback;
  }
  const std::string range = absl::StrCat("a number in [", min, ", ", max, "]");
  absl::StatusOr<std::string> text = Scalar(key, range);
  if (!text.ok()) {
    return text.status();
  }
  double value = 0;
  if (!absl::SimpleAtod(*text, &value) || !(value >= min && value <= max)) {
    return Error(At(key), key, absl::StrCat("expected ", range, ", got \"", *text, "\""));
  }
  return value;
}

absl::StatusOr<std::string> Section::String(absl::string_view key, std::string fallback) const {
  if (!Has(key)) {
    return fallback;
  }
  return Scalar(key, "a string");
}

absl::StatusOr<std::string> Section::Enum(absl::string_view key, std::string fallback,
                                          std::initializer_list<absl::string_view> allowed) const {
  absl::StatusOr<std::string> value = String(key, std::move(fallback));
  if (!value.ok()) {
    return value.status();
  }
  if (std::find(allowed.begin(), allowed.end(), *value) == allowed.end()) {
    return Error(At(key), key,
                 absl::StrCat("expected one of ", absl::StrJoin(allowed, ", "), ", got \"",
                              *value, "\""));
  }
  return value;
}

absl::StatusOr<absl::Duration> Section::Duration(absl::string_view key, absl::Duration fallback,
                                                 absl::Duration min,
                                                 absl::Duration max) const {
  if (!Has(key)) {
    return fallback;
  }
  absl::StatusOr<std::string> text = Scalar(key, "a duration such as 30s, 5m or 1h");
  if (!text.ok()) {
    return text.status();
  }
  absl::Duration value;
  if (!absl::ParseDuration(*text, &value) || value < min || value > max) {
    return Error(At(key), key,
                 absl::StrCat("expected a duration in [", absl::FormatDuration(min), ", ",
                              absl::FormatDuration(max), "] such as 30s or 5m, got \"", *text,
                              "\""));
  }
  return value;
}

absl::StatusOr<std::vector<std::string>> Section::StringList(
    absl::string_view key, std::vector<std::string> fallback) const {
  if (!Has(key)) {
    return fallback;
  }
  const YAML::Node n = At(key);
  if (!n.IsSequence()) {
    return Error(n, key, "expected a list");
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n.size(); ++i) {
    if (!n[i].IsScalar()) {
      return Error(n[i], key, absl::StrCat("item ", i, ": expected a string"));
    }
    out.push_back(n[i].Scalar());
  }
  return out;
}

absl::StatusOr<std::vector<Cidr>> Section::CidrList(absl::string_view key) const {
  RW_ASSIGN_OR_RETURN(const std::vector<std::string> texts, StringList(key, {}));
  std::vector<Cidr> out;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    absl::StatusOr<Cidr> cidr = Cidr::Parse(texts[i]);
    if (!cidr.ok()) {
      const YAML::Node list = At(key);
      return Error(list[i], key, cidr.status().message());
    }
    out.push_back(*cidr);
  }
  return out;
}

absl::StatusOr<Section> LoadString(absl::string_view text, std::string name) {
  auto file = std::make_shared<const std::string>(std::move(name));
  try {
    YAML::Node root = YAML::Load(std::string(text));
    if (root.IsDefined() && !root.IsNull() && !root.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(*file, ":", root.Mark().line + 1, ":", root.Mark().column + 1,
                       ": the top level must be a mapping of keys"));
    }
    return Section(root, "", file);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(*file, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
}

absl::StatusOr<Section> LoadFile(const std::string& path) {
  // A device or a FIFO would be read forever: config files are regular files.
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open config file"));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return LoadString(buffer.str(), path);
}

}  // namespace relaywatch::config
