#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "capture/base/ip_address.h"
#include "detectors/common/signatures.h"
#include "detectors/event.h"
#include "detectors/relay/config.h"

namespace relaywatch::host {

// A sanctioned use of a remote-control tool (IT support, a managed tenant): sessions that
// match every field given raise no alert (they are still logged and counted).
struct AllowRule {
  std::string app;                  // "" or "*": any tool
  std::vector<Cidr> controller;     // empty: any controller
  std::vector<Cidr> host;           // empty: any internal host
};

// A monitored network and where it is: the round trip that counts as local for its hosts.
struct Site {
  std::string name;
  std::vector<Cidr> networks;
  std::string location;  // free text for the analyst ("Seattle, US")
  absl::Duration local_rtt = absl::Milliseconds(60);
};

struct HostStageConfig {
  std::vector<Cidr> home_networks;
  // First match wins; hosts in no site use relay.local_rtt.
  std::vector<Site> sites;
  // detectors.relay: the hidden-leg, controller-RTT and stepping-stone decisions.
  detectors::relay::RelayConfig relay;
  std::vector<AllowRule> allow;
  // Several different tools operating one host within this window raise the severity.
  absl::Duration multi_tool_window = absl::Hours(24 * 7);
  // Tool signatures applied to the TLS and DNS clues that workers report (names, ALPN,
  // certificate subjects, resolved addresses). Null: no attribution.
  std::shared_ptr<const detectors::SignatureSet> signatures;
  // Addresses remembered from DNS answers for a tool's names; the oldest is forgotten.
  std::size_t max_resolved_addresses = 65536;
  absl::Duration max_resolved_age = absl::Hours(1);
  // The same (host, rule, app, peer) alerts once per window; repeats are counted.
  absl::Duration dedup_window = absl::Hours(1);
  // At most this many alerts per host per hour of packet time; the rest are counted.
  std::uint64_t max_alerts_per_host_per_hour = 20;
  // Hosts remembered for dedup and rate limiting; the idlest is forgotten (and counted).
  std::size_t max_hosts = 65536;
};

// Signature ids of the rules in this stage (our range 9100000-9199999).
inline constexpr std::uint32_t kSidRemoteControlFromOutside = 9100001;
inline constexpr std::uint32_t kSidRemoteToolSession = 9100003;
inline constexpr std::uint32_t kSidHiddenLeg = 9100010;
inline constexpr std::uint32_t kSidControllerRtt = 9100011;
inline constexpr std::uint32_t kSidSteppingStone = 9100012;

// Counters read by the metrics collector (copied under the stage's mutex).
struct HostStageStats {
  std::map<std::string, std::uint64_t> remote_sessions_by_app;
  // (detector, severity) -> alerts published.
  std::map<std::pair<std::string, int>, std::uint64_t> alerts;
  std::uint64_t suppressed_duplicate = 0;
  std::uint64_t suppressed_rate_limited = 0;
  std::uint64_t suppressed_allowed = 0;
  std::uint64_t hosts_tracked = 0;
  std::uint64_t hosts_evicted = 0;
  std::uint64_t resolved_evicted = 0;
  std::uint64_t relay_records = 0;
  std::uint64_t sessions_evicted = 0;  // remote sessions forgotten before their relay record
};

// The host stage: one thread that sees every worker's findings, decides which internal host
// an event is about, and turns findings into alerts with dedup and rate limiting.
//
// Rule "remote control from outside": a remote_session whose controlled endpoint is inside
// `home_networks` and whose controller is outside them.
// Time: packet time of the findings only. Thread-safety: Process() from one thread; stats()
// from any.
class HostStage {
 public:
  explicit HostStage(HostStageConfig config);

  // Handles one finding; appends it and any alert it causes to `publish`, in order.
  void Process(Event finding, std::vector<Event>& publish);
  // Replaces the configuration (SIGHUP) keeping dedup and rate-limit state.
  void Reconfigure(HostStageConfig config);

  HostStageStats stats() const;
  bool IsHome(const IpAddress& address) const;

 private:
  struct HostState {
    PacketTime last_seen;
    // Alert keys (rule/app/peer) -> when last alerted.
    absl::flat_hash_map<std::string, PacketTime> alerted;
    // Remote-control tools seen operating (or in a session with) this host, and when.
    absl::flat_hash_map<std::string, PacketTime> tools;
    // Start of the current rate-limit hour and alerts in it.
    PacketTime window_start = absl::InfinitePast();
    std::uint64_t window_alerts = 0;
    // Relay findings within detectors.relay.window, oldest first, each list capped.
    struct HiddenSample {
      PacketTime ts;
      double hidden_ms = 0;
      std::uint64_t turnarounds = 0;
      std::uint64_t flow_id = 0;
      std::string app;
    };
    std::deque<HiddenSample> hidden;
    struct OnFlow {
      std::uint64_t flow_id = 0;
      bool inbound = false;  // the host is the responder
      IpAddress peer;
      std::vector<PacketTime> ons;
    };
    std::deque<OnFlow> on_flows;
  };
  // A remote session's ends, kept until the flow's relay record arrives.
  struct SessionEnds {
    IpAddress controlled;
    IpAddress controller;
    std::string app;
    PacketTime ts;
  };

  void RemoteSession(const Event& finding, std::vector<Event>& publish);
  // TLS and DNS clues: a flow whose server name, ALPN, certificate or resolved address
  // belongs to a tool of the signature file becomes a remote_session of that tool.
  void TlsClue(const Event& finding, std::vector<Event>& publish);
  void DnsClue(const Event& finding);
  // relay records: the controller's distance for a remote session, the hidden leg behind a
  // host's own flows, and stepping stones through it (host_stage_relay.cc).
  void Relay(Event& finding, std::vector<Event>& publish);
  void RememberSession(const Event& finding);
  const Site* SiteOf(const IpAddress& host) const;
  absl::Duration LocalRtt(const IpAddress& host) const;
  void HiddenLeg(const Event& finding, const IpAddress& host, std::vector<Event>& publish);
  void ControllerRtt(Event& finding, std::vector<Event>& publish);
  void SteppingStones(const Event& finding, const IpAddress& host, bool inbound,
                      const IpAddress& peer, std::vector<PacketTime> ons,
                      std::vector<Event>& publish);
  // An alert of this stage, counted; `key` is its dedup key.
  void PublishAlert(Event alert, std::vector<Event>& publish);
  bool Allowed(const std::string& app, const IpAddress& host,
               const std::optional<IpAddress>& controller) const;
  // Records `app` for `host` and returns the distinct tools seen within the window.
  std::vector<std::string> Tools(const IpAddress& host, const std::string& app, PacketTime now);
  // Applies dedup and rate limit; true when the alert may be published.
  bool Admit(const IpAddress& host, const std::string& key, PacketTime now);
  HostState& Host(const IpAddress& host, PacketTime now);

  HostStageConfig config_;
  absl::flat_hash_map<IpAddress, HostState> hosts_;
  struct Resolved {
    const detectors::AppSignature* app = nullptr;
    std::string name;
    PacketTime seen;
  };
  absl::flat_hash_map<IpAddress, Resolved> resolved_;
  // Flows already reported as a tool's session (a flow has several ClientHellos).
  absl::flat_hash_map<std::uint64_t, PacketTime> attributed_flows_;
  absl::flat_hash_map<std::uint64_t, SessionEnds> sessions_;
  mutable absl::Mutex mu_;
  HostStageStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relaywatch::host
