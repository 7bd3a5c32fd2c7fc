// Fuzz target for the address list file parser and table:
// relaywatch::detectors::context::AddressLists::Add(input).
//
// Contracts checked besides crashes and sanitizer reports:
// - nothing throws;
// - every error is InvalidArgument and starts with the file name ("fuzz.txt:line: ...");
//   a failed Add leaves the table unchanged;
// - every accepted prefix prints as text that parses back to itself, and the table finds
//   it (its network address matches the list, with a prefix at least as long).

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

#include "detectors/context/address_lists.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace fuzz = relaywatch::fuzz;
namespace context = relaywatch::detectors::context;

constexpr char kFileName[] = "fuzz.txt";

constexpr char kTarget[] = "address_list_fuzz";

void Fail(const char* what, const std::string& detail) {
  fuzz::Fail(kTarget, what, detail);
}

void CheckError(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kInvalidArgument ||
      !absl::StartsWith(status.message(), absl::StrCat(kFileName, ":"))) {
    Fail("bad error", status.ToString());
  }
}

void Run(absl::string_view text) {
  context::AddressListLimits limits;
  limits.max_prefixes_per_list = 500;
  limits.max_total_prefixes = 800;
  context::AddressLists lists(limits);
  // A fixed first list, so a failed second Add can be checked for leftovers.
  if (!lists.Add("base", context::ListKind::kHosting, "192.0.2.0/24\n2001:db8::/32\n", "base")
           .ok()) {
    Fail("base list", "rejected");
  }
  absl::StatusOr<std::vector<context::Prefix>> parsed =
      context::ParseAddressList(text, kFileName, limits);
  const absl::Status added = lists.Add("fuzz", context::ListKind::kConsumerVpn, text, kFileName);
  if (parsed.ok() != added.ok()) {
    Fail("ParseAddressList and Add disagree", added.ToString());
  }
  if (!added.ok()) {
    CheckError(added);
    if (lists.lists().size() != 1 || lists.total_prefixes() != 2) {
      Fail("failed Add left entries behind", added.ToString());
    }
    return;
  }
  if (parsed->size() > limits.max_prefixes_per_list) {
    Fail("per-list limit", std::to_string(parsed->size()));
  }
  for (const context::Prefix& prefix : *parsed) {
    absl::StatusOr<context::Prefix> again = context::ParsePrefix(prefix.ToString());
    if (!again.ok() || !(*again == prefix)) {
      Fail("prefix does not round-trip", prefix.ToString());
    }
    if ((lists.MatchMask(prefix.network) & 0b10) == 0) {
      Fail("accepted prefix not found", prefix.ToString());
    }
    bool found = false;
    for (const context::AddressListMatch& match : lists.Lookup(prefix.network)) {
      if (match.list == 1) {
        found = match.prefix.length >= prefix.length;
      }
    }
    if (!found) {
      Fail("Lookup misses the list", prefix.ToString());
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::FailOnException(kTarget, [&] { Run(fuzz::AsText(data, size)); });
  return 0;
}
