#include "detectors/context/address_lists.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

#include "capture/base/status_macros.h"
#include "detectors/context/text.h"

namespace relaywatch::detectors::context {
namespace {

constexpr std::pair<ListKind, absl::string_view> kKindNames[] = {
    {ListKind::kConsumerVpn, "consumer_vpn"}, {ListKind::kHosting, "hosting"},
    {ListKind::kTorExit, "tor_exit"},         {ListKind::kProxy, "proxy"},
    {ListKind::kCorporate, "corporate"},      {ListKind::kOther, "other"},
};

bool IsListName(absl::string_view name) {
  if (name.empty() || name.size() > AddressLists::kMaxNameBytes) {
    return false;
  }
  for (const char c : name) {
    if (!absl::ascii_islower(static_cast<unsigned char>(c)) &&
        !absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::string_view ListKindName(ListKind kind) {
  for (const auto& [k, name] : kKindNames) {
    if (k == kind) {
      return name;
    }
  }
  return "other";
}

std::optional<ListKind> ParseListKind(absl::string_view name) {
  for (const auto& [kind, text] : kKindNames) {
    if (text == name) {
      return kind;
    }
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<Prefix>> ParseAddressList(absl::string_view text,
                                                     absl::string_view source,
                                                     const AddressListLimits& limits) {
  std::vector<Prefix> prefixes;
  int line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const std::size_t end = text.find('\n');
    absl::string_view line = text.substr(0, end);
    text = end == absl::string_view::npos ? absl::string_view() : text.substr(end + 1);
    const auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(source, ":", line_number, ": ", what));
    };
    if (line.size() > limits.max_line_bytes) {
      return error(absl::StrCat("line longer than ", limits.max_line_bytes, " bytes"));
    }
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (const std::size_t hash = line.find('#'); hash != absl::string_view::npos) {
      line = line.substr(0, hash);
    }
    line = TrimBlanks(line);
    if (line.empty()) {
      continue;
    }
    for (const char c : line) {
      if (c == ' ' || c == '\t') {
        return error(absl::StrCat(Quote(line),
                                  ": one prefix per line (ranges such as a - b are not read; "
                                  "comments start with #)"));
      }
    }
    absl::StatusOr<Prefix> prefix = ParsePrefix(line);
    if (!prefix.ok()) {
      return error(prefix.status().message());
    }
    if (prefixes.size() >= limits.max_prefixes_per_list) {
      return error(absl::StrCat("more than ", limits.max_prefixes_per_list,
                                " prefixes (the per-list limit)"));
    }
    prefixes.push_back(*prefix);
  }
  return prefixes;
}

absl::Status AddressLists::Add(absl::string_view name, ListKind kind, absl::string_view text,
                               absl::string_view source) {
  if (!IsListName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": list name ", Quote(name),
                                                   " must be 1 to ", kMaxNameBytes,
                                                   " characters of a-z, 0-9, _ and -"));
  }
  if (FindList(name).has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": a list named ", name, " is already loaded"));
  }
  if (lists_.size() >= kMaxLists) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": more than ", kMaxLists, " address lists"));
  }
  RW_ASSIGN_OR_RETURN(const std::vector<Prefix> prefixes, ParseAddressList(text, source, limits_));
  // Counted before de-duplication, so nothing is inserted into a table that would overflow.
  if (total_prefixes_ + prefixes.size() > limits_.max_total_prefixes) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", prefixes.size(),
                                                   " prefixes would take all lists past the "
                                                   "limit of ",
                                                   limits_.max_total_prefixes));
  }
  const auto index = static_cast<std::uint32_t>(lists_.size());
  const std::uint64_t bit = std::uint64_t{1} << index;
  AddressListInfo info;
  info.name = std::string(name);
  info.kind = kind;
  info.source = std::string(source);
  for (const Prefix& prefix : prefixes) {
    std::uint64_t& mask = *table_.Insert(prefix, 0).first;
    if ((mask & bit) == 0) {
      mask |= bit;
      ++info.prefixes;
    }
  }
  total_prefixes_ += info.prefixes;
  lists_.push_back(std::move(info));
  return absl::OkStatus();
}

absl::Status AddressLists::AddFile(absl::string_view name, ListKind kind, const std::string& path) {
  RW_ASSIGN_OR_RETURN(const std::string text, ReadTextFile(path, limits_.max_file_bytes));
  return Add(name, kind, text, path);
}

std::uint64_t AddressLists::MatchMask(const IpAddress& address) const {
  std::uint64_t mask = 0;
  table_.ForEachMatch(address, [&](const Prefix&, const std::uint64_t& lists) {
    mask |= lists;
    return true;
  });
  return mask;
}

absl::InlinedVector<AddressListMatch, 4> AddressLists::Lookup(const IpAddress& address) const {
  absl::InlinedVector<AddressListMatch, 4> matches;
  std::uint64_t seen = 0;
  // Longest prefixes come first, so the first prefix found for a list is its most specific.
  table_.ForEachMatch(address, [&](const Prefix& prefix, const std::uint64_t& lists) {
    std::uint64_t fresh = lists & ~seen;
    seen |= lists;
    while (fresh != 0) {
      const int index = __builtin_ctzll(fresh);
      fresh &= fresh - 1;
      matches.push_back({static_cast<std::uint32_t>(index), prefix});
    }
    return true;
  });
  std::sort(matches.begin(), matches.end(),
            [](const AddressListMatch& a, const AddressListMatch& b) { return a.list < b.list; });
  return matches;
}

std::optional<std::uint32_t> AddressLists::FindList(absl::string_view name) const {
  for (std::size_t i = 0; i < lists_.size(); ++i) {
    if (lists_[i].name == name) {
      return static_cast<std::uint32_t>(i);
    }
  }
  return std::nullopt;
}

}  // namespace relaywatch::detectors::context
