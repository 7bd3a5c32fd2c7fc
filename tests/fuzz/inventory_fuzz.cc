// Fuzz target for the asset inventory CSV parser:
// relaywatch::detectors::context::ParseInventory(input).
//
// Contracts checked besides crashes and sanitizer reports:
// - nothing throws;
// - every error is InvalidArgument and starts with the file name ("fuzz.csv:line: ...");
// - an accepted inventory has at most max_rows rows, each naming a host, each findable by
//   its MAC and host name, and by its address (as itself or a longer prefix); its free text
//   is UTF-8 without control characters.

#include "detectors/context/inventory.h"

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

#include "detectors/context/text.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace fuzz = relaywatch::fuzz;
namespace context = relaywatch::detectors::context;

constexpr char kFileName[] = "fuzz.csv";

constexpr char kTarget[] = "inventory_fuzz";

void Fail(const char* what, const std::string& detail) {
  fuzz::Fail(kTarget, what, detail);
}

void Run(absl::string_view text) {
  context::InventoryLimits limits;
  limits.max_rows = 200;
  limits.max_field_bytes = 128;
  absl::StatusOr<context::Inventory> parsed = context::ParseInventory(text, kFileName, limits);
  if (!parsed.ok()) {
    if (parsed.status().code() != absl::StatusCode::kInvalidArgument ||
        !absl::StartsWith(parsed.status().message(), absl::StrCat(kFileName, ":"))) {
      Fail("bad error", parsed.status().ToString());
    }
    return;
  }
  const context::Inventory& inventory = *parsed;
  if (inventory.size() > limits.max_rows) {
    Fail("row limit", std::to_string(inventory.size()));
  }
  for (const context::Asset& asset : inventory.assets()) {
    if (!asset.address && !asset.mac && asset.hostname.empty()) {
      Fail("row without a host", std::to_string(asset.line));
    }
    if (asset.mac && inventory.FindByMac(*asset.mac) != &asset) {
      Fail("MAC lookup", asset.mac->ToString());
    }
    if (!asset.hostname.empty() && inventory.FindByHostname(asset.hostname) != &asset) {
      Fail("host name lookup", asset.hostname);
    }
    if (asset.address) {
      const context::Asset* found = inventory.FindByAddress(asset.address->network);
      if (found == nullptr || !found->address || found->address->length < asset.address->length) {
        Fail("address lookup", asset.address->ToString());
      }
    }
    for (const std::string* text : {&asset.person, &asset.location, &asset.hostname}) {
      if (!context::IsValidUtf8(*text) || context::HasControlCharacter(*text)) {
        Fail("unsafe text kept", *text);
      }
    }
    if (asset.timezone.has_value() == asset.timezone_name.empty()) {
      Fail("time zone without a name or name without a zone", asset.timezone_name);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::FailOnException(kTarget, [&] { Run(fuzz::AsText(data, size)); });
  return 0;
}
