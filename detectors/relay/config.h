#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "capture/base/config_reader.h"
#include "capture/base/ip_address.h"

namespace relaywatch::detectors::relay {

// The methods an operator can switch off one by one (`methods:`). A disabled method costs no
// per-packet work, adds no field to the `relay` record and raises no alert. The handshake
// split and data/ACK round trips always run: every method reads them (the client's and the
// controller's legs, retransmissions).
struct RelayMethods {
  bool hidden_leg = true;      // client turnarounds minus the client's RTT; alert 9100010
  bool controller_rtt = true;  // RTT to a remote-control session's controller; alert 9100011
  bool stepping_stone = true;  // ON-period correlation (Zhang & Paxson); alert 9100012
  bool keystrokes = true;      // keystroke timing of SSH sessions; typing baseline alert 9100013
  bool routed_relay = true;    // a host's connections end far beyond the host; alert 9100014

  bool operator==(const RelayMethods&) const = default;
};

// detectors.relay: what each worker measures per TCP flow, and how the host stage decides.
struct RelayConfig {
  bool enabled = true;
  RelayMethods methods;
  // Client turnarounds kept per flow. The first ones are the TLS/SSH setup, which software
  // answers at once; later ones may be a person typing.
  std::uint64_t turnaround_samples = 6;
  // A turnaround longer than this is a person or an application pause, not a network delay.
  absl::Duration max_turnaround = absl::Seconds(1);
  // A flow's `relay` record is written at its end, or this long after its first packet.
  absl::Duration report_after = absl::Minutes(2);
  // Stepping stones (Zhang & Paxson): data after this much silence starts an ON period.
  absl::Duration idle = absl::Milliseconds(500);

  // Host decisions (host stage).
  // Findings older than this no longer count towards a host's decision.
  absl::Duration window = absl::Hours(1);
  // Client turnarounds, over all flows of a host in the window, before a hidden leg is judged.
  std::uint64_t min_samples = 5;
  // Or: the host's last min_flows flows each show a hidden leg of at least the budget.
  std::uint64_t min_flows = 3;
  // Servers whose clients are slow on their own (an SSL-VPN gateway whose client waits on
  // something before each answer): flows to them keep their record but do not count
  // toward a host's hidden leg. Timing cannot tell such a client from a relay.
  std::vector<Cidr> hidden_leg_exempt_servers;
  // A relay makes its far client wait a hidden round trip (two, if it held its first data
  // for an ACK) before it can open its TLS or SSH, and each answer costs one, so over a
  // host's far flows the wait is about one answer. A client that waits several answers is
  // slow on its own (a cold JVM on a starved CPU, loading its TLS stack) and its answers may
  // be its own work: above this median ratio of wait to answer no hidden leg is decided
  // (0: off).
  double hidden_leg_max_opening_ratio = 2.5;
  // Round trip that counts as local where no site says otherwise.
  absl::Duration local_rtt = absl::Milliseconds(60);
  // An outbound ON this soon after an inbound ON of the same host is correlated.
  absl::Duration stepping_stone_delta = absl::Milliseconds(80);
  double stepping_stone_ratio = 0.3;
  std::uint64_t stepping_stone_min_ons = 6;
  // ... and no likelier than this by coincidence (SteppingStone::chance).
  double stepping_stone_max_p = 0.001;
  // Packet-level test of SSH flows (CorrelatePackets): an outbound packet this soon after an
  // inbound one was forwarded; zero turns the test off.
  absl::Duration stepping_stone_packet_delta = absl::Milliseconds(5);
  // Also pair an inbound session from outside to one home host with the SSH flows out of
  // the other home hosts of its site: a device beside the laptop (an IP-KVM) types its keys.
  bool stepping_stone_across_hosts = true;
  // Typing baseline (keystrokes): a host's output -> next key delays in SSH sessions, the
  // typing_baseline_samples before the longest window, are its person's own baseline (the
  // first ones until there are more); every half window the last window of
  // typing_window_samples delays, and the last 2, 4, ... windows up to
  // typing_longest_window_samples, are compared with it, and it alerts when one runs later
  // by at least the local round trip with a permutation p-value of at most typing_max_p
  // (shared out over the windows judged). A person's thinking varies by far more than a
  // 40 ms relay adds, so such a relay shows only over hundreds of reactions.
  std::uint64_t typing_baseline_samples = 600;
  std::uint64_t typing_window_samples = 60;
  std::uint64_t typing_longest_window_samples = 1920;
  double typing_max_p = 0.001;
};

// Reads detectors.relay; unknown keys and bad values are errors with file:line:col.
absl::StatusOr<RelayConfig> ParseRelayConfig(const config::Section& section);

}  // namespace relaywatch::detectors::relay
