#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#include "capture/base/ip_address.h"
#include "detectors/common/signatures.h"
#include "detectors/context/config.h"
#include "detectors/event.h"
#include "detectors/relay/config.h"
#include "detectors/relay/timing.h"

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

// scoring: every alert is evidence against its host; evidence decays, kinds combine.
struct ScoringConfig {
  // A piece of evidence counts half after this long (packet time).
  absl::Duration half_life = absl::Hours(72);
  // A host whose score reaches this is alerted (once per dedup window).
  double alert_threshold = 0.7;
  // Weight per evidence kind (an alert's detector; remote-control alerts about an IP-KVM
  // count as "kvm"). Kinds not listed weigh `default_weight`.
  std::map<std::string, double> weights = {
      {"remote_access", 0.6}, {"kvm", 0.8},           {"hidden_leg", 0.7},
      {"controller_rtt", 0.7}, {"stepping_stone", 0.5}, {"keystrokes", 0.4},
      {"routed_relay", 0.7},  {"shared_line", 0.6},
      {"tunnel", 0.3},         {"flow_shape", 0.4},      {"work_hours", 0.4},
      {"address_list", 0.5},   {"geo", 0.5}};
  double default_weight = 0.3;
  // Scores survive a restart in this file ("" = not kept). Written atomically at shutdown
  // and every `save_interval` of wall time.
  std::string state_file;
  absl::Duration save_interval = absl::Minutes(5);
  // Hosts exported in relaywatch_host_score (highest first).
  std::size_t top_hosts = 20;
};

struct HostStageConfig {
  std::vector<Cidr> home_networks;
  ScoringConfig scoring;
  // First match wins; hosts in no site use relay.local_rtt.
  std::vector<Site> sites;
  // detectors.relay: the hidden-leg, controller-RTT and stepping-stone decisions.
  detectors::relay::RelayConfig relay;
  // Addresses of the company's entry points (VPN concentrators, SSO and web portals): the
  // source address of a connection to one is the public address of the line it came from.
  std::vector<Cidr> entry_points;
  // Shared lines: devices behind one public address at the entry points.
  absl::Duration shared_line_window = absl::Hours(24);
  std::uint64_t shared_line_min_devices = 3;
  std::size_t max_public_addresses = 16384;
  // Services of the entry points that are tunnels (a device keeps one open): protocol, port.
  std::vector<std::pair<std::uint8_t, std::uint16_t>> vpn_ports = {
      {6, 1194}, {17, 1194}, {17, 500}, {17, 4500}, {17, 51820}, {6, 1723}};
  std::vector<AllowRule> allow;
  // What the organisation knows (top-level `context:`): inventory, work hours, address lists,
  // GeoIP. Null: none of it.
  std::shared_ptr<const detectors::context::Context> context;
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
inline constexpr std::uint32_t kSidTypingShift = 9100013;
inline constexpr std::uint32_t kSidRoutedRelay = 9100014;
inline constexpr std::uint32_t kSidSharedLine = 9100020;
inline constexpr std::uint32_t kSidTunnelChange = 9100021;
inline constexpr std::uint32_t kSidNestedTunnel = 9100022;
inline constexpr std::uint32_t kSidRiskScore = 9100030;
inline constexpr std::uint32_t kSidWorkHours = 9100040;
inline constexpr std::uint32_t kSidListedPeer = 9100041;
inline constexpr std::uint32_t kSidForeignPeer = 9100042;

// One host's score and the evidence behind it, strongest first.
struct HostScore {
  IpAddress host;
  double score = 0;
  struct Item {
    std::string kind;
    double contribution = 0;  // weight x strength x decay
    std::uint32_t signature_id = 0;
    std::string signature;
    PacketTime ts;
  };
  std::vector<Item> evidence;
};

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
  // flow_shape findings: unknown_remote_control dropped because the flow already had a
  // named session; named sessions whose direction the flow's shape filled in; named
  // sessions forgotten because their table was full.
  std::uint64_t shape_suppressed_named = 0;
  std::uint64_t shape_suppressed_dns = 0;  // the flow's handshake offered only DNS transports
  std::uint64_t shape_directions_filled = 0;
  std::uint64_t named_flows_evicted = 0;
  std::uint64_t relay_records = 0;
  // Hidden-leg turnarounds explained by a fetch of the host's (not counted), and exchanges
  // forgotten as possible fetches because the host's list was full.
  std::uint64_t turnarounds_explained = 0;
  std::uint64_t fetches_evicted = 0;
  std::uint64_t hidden_leg_exempt_flows = 0;  // to detectors.relay.hidden_leg_exempt_servers
  // Hidden-leg decisions not taken: the host's far clients waited too long to open
  // (detectors.relay.hidden_leg_max_opening_ratio).
  std::uint64_t hidden_leg_slow_openings = 0;
  std::uint64_t sessions_evicted = 0;  // remote sessions forgotten before their relay record
  // Relay records of flows that went on, kept for a session named on them later: paired
  // with one (a controller_rtt reading), or forgotten because their table was full.
  std::uint64_t late_sessions_paired = 0;
  std::uint64_t late_records_evicted = 0;
  std::uint64_t public_addresses = 0;  // lines tracked at the entry points
  std::uint64_t public_addresses_evicted = 0;
  // Company-VPN sessions whose SYN MSS implied a tunnel: nested (decoded encapsulation, or
  // the device's segments capped at that MTU), a clamp (segments above it), or forgotten
  // undecided; devices whose path evidence was forgotten because its table was full.
  std::uint64_t nesting_nested = 0;
  std::uint64_t nesting_clamp = 0;
  std::uint64_t nesting_undecided_evicted = 0;
  std::uint64_t path_devices_evicted = 0;
  // The highest host scores at the last packet time the stage saw (scoring.top_hosts).
  std::vector<std::pair<std::string, double>> top_scores;
  std::uint64_t hosts_above_threshold = 0;
  // Work-hours profiles kept (inventory hosts with a time zone), and forgotten when full.
  std::uint64_t work_profiles = 0;
  std::uint64_t work_profiles_evicted = 0;
  // Typing baselines kept (home hosts with timed SSH reactions), and forgotten when full.
  std::uint64_t typing_profiles = 0;
  std::uint64_t typing_profiles_evicted = 0;
  // Flows kept for stepping stones across hosts (an inbound session from outside to one home
  // host, an SSH session out of another: an IP-KVM beside a laptop), and forgotten when full.
  std::uint64_t cross_host_flows = 0;
  std::uint64_t cross_host_flows_evicted = 0;
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

  // Flows kept for stepping stones across hosts: sessions from outside, SSH flows out (each a
  // table of its own, so that a site's many SSH users cannot push out the few sessions from
  // outside), and of each direction per host. A kept flow is one window's times, a few KB.
  static constexpr std::size_t kMaxCrossHostInbound = 1024;
  static constexpr std::size_t kMaxCrossHostOutbound = 4096;
  static constexpr std::size_t kMaxCrossHostFlowsPerHost = 8;

  // A flow's ON-period starts, an SSH flow's sampled input packets and its smoothed round
  // trips from the sensor to each end ([originator, responder]), which relay records carry for
  // the stepping-stone correlation.
  struct OnPeriods {
    std::vector<PacketTime> ons;
    std::array<std::optional<double>, 2> legs;
    std::vector<PacketTime> packets;
    std::vector<PacketTime> output_ons;  // SSH: ON periods of the server's output
    std::vector<PacketTime> burst_starts;  // SSH, keys obfuscated: the first key after a pause
    std::vector<PacketTime> updates;       // a remote desktop's screen updates
    bool coalesced = false;  // SSH: the server's side sends a round trip's data at once
  };

  // Handles one finding; appends it and any alert it causes to `publish`, in order.
  void Process(Event finding, std::vector<Event>& publish);
  // Replaces the configuration (SIGHUP) keeping dedup, rate-limit and score state. Safe from
  // any thread: the new configuration takes effect at the next Process() call.
  void Reconfigure(HostStageConfig config);

  HostStageStats stats() const;
  // Scores at the stage's current packet time, highest first (host_stage_score.cc).
  std::vector<HostScore> Scores(std::size_t limit) const;
  // Keeps and restores the evidence behind the scores (scoring.state_file). Load replaces
  // what the stage holds; a missing file is not an error.
  absl::Status SaveState(const std::string& path) const;
  absl::Status LoadState(const std::string& path);
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
      std::uint64_t flow_id = 0;
      std::string app;
      std::string server;  // the flow's responder: the host opened the flow
      std::uint16_t server_port = 0;
      // The turnarounds no fetch has explained yet, when each wait began, and the flow's
      // visible client leg: a fetch whose record comes later may still explain one.
      std::vector<double> samples_ms;
      std::vector<PacketTime> waits;
      // How each turnaround's flight arrived (relay::ReadTurnaround), in the same order.
      std::vector<double> spreads_ms;
      double client_leg_ms = 0;
      // The connection's opening to the client's first data (relay::ReadTurnaround).
      std::optional<double> connect_wait_ms;
      // The client's wait to open what it speaks: its tunnel's when it went through a proxy
      // (whose TCP opening its proxy request answered), else its connection's.
      std::optional<double> opening_wait_ms;
      // Only spread flights were answered: hidden_ms is the least the leg can be.
      bool lower_bound = false;
      // Only spread flights were answered, and the connection's wait decided.
      bool by_connect_wait = false;
      // A TLS client's answer to the handshake, while no fetch explained it: then it is
      // samples_ms[0], and it bounds the flow's turnaround (relay::TurnaroundMs).
      std::optional<double> handshake_ms;
    };
    std::deque<HiddenSample> hidden;
    // The host's recent exchanges (requests and their answers) as possible fetches
    // (revocation, AIA) that another flow's turnaround waited on, oldest start first.
    std::deque<detectors::relay::Exchange> fetches;
    // Routed relay: the host's own round trip (a sliding minimum over the window, with the
    // TTL of the host's SYN or SYN/ACK that showed it) and the flows it opened whose round
    // trip reached the budget, the candidates for connections it forwards.
    struct Leg {
      PacketTime ts;
      double rtt_ms = 0;
      std::uint8_t ttl = 0;
      std::uint64_t flow_id = 0;
      std::string app;
      std::string peer;
    };
    std::deque<Leg> own_legs;  // increasing round trips: the front is the window's least
    std::deque<Leg> far_legs;
    struct OnFlow {
      std::uint64_t flow_id = 0;
      bool inbound = false;  // the host is the responder
      IpAddress peer;
      std::vector<PacketTime> ons;
      double host_leg_ms = 0;  // smoothed round trip from the sensor to the host on this flow
      // Inbound: the smoothed round trip to the controller, and whether the host's side
      // coalesces what it forwards there (each segment waits for the last one's ACK).
      double far_leg_ms = 0;
      bool coalesced = false;
      std::vector<PacketTime> packets;
      std::vector<PacketTime> output_ons;
      std::vector<PacketTime> burst_starts;
      std::vector<PacketTime> updates;
      PacketTime first;  // the earliest of them
      PacketTime last;   // the latest of them
    };
    std::deque<OnFlow> on_flows;
    // Risk evidence by kind: the strongest recent piece of each kind.
    struct Evidence {
      double strength = 0;  // 0..1 from the alert's severity
      PacketTime ts;
      std::uint32_t signature_id = 0;
      std::string signature;
    };
    absl::flat_hash_map<std::string, Evidence> evidence;
    bool above_threshold = false;
  };
  // A remote session's ends, kept until the flow's relay record arrives.
  struct SessionEnds {
    IpAddress controlled;
    IpAddress controller;
    std::string app;
    PacketTime ts;
  };

  void ProcessFinding(Event finding, std::vector<Event>& publish);
  void RemoteSession(const Event& finding, std::vector<Event>& publish);
  // TLS and DNS clues: a flow whose server name, ALPN, certificate or resolved address
  // belongs to a tool of the signature file becomes a remote_session of that tool.
  void TlsClue(const Event& finding, std::vector<Event>& publish);
  void DnsClue(const Event& finding);
  // flow_shape findings (host_stage_shape.cc). A named session's flow remembered, so its
  // later shape finding can be dropped or fill in the direction.
  struct NamedFlow {
    PacketTime ts = absl::InfinitePast();
    bool direction_known = false;
    bool dns = false;  // named by its handshake as a DNS transport, no remote session
    FlowRef flow;
    nlohmann::json session;  // the remote_session body while its direction is unknown
  };
  // True when the finding was consumed here (a shape finding for a named flow, or a bare
  // screen side); named remote_session findings are noted and go on.
  bool ShapeFinding(const Event& finding, std::vector<Event>& publish);
  void NoteNamedSession(const Event& session);
  void NoteDnsTransport(const Event& tls);
  // The flow's entry, made room for (oldest beyond a week, else the oldest, counted).
  NamedFlow& NamedFlowEntry(std::uint64_t flow_id, PacketTime ts);
  void FillDirection(NamedFlow& named, const Event& finding, std::vector<Event>& publish);
  // relay records: the controller's distance for a remote session, the hidden leg behind a
  // host's own flows, and stepping stones through it (host_stage_relay.cc).
  void Relay(Event& finding, std::vector<Event>& publish);
  // A later window of a reported flow's input (relay_on_window): stepping stones only.
  void RelayOnWindow(Event& finding, std::vector<Event>& publish);
  // A remote session, however it was named (a detector, a TLS clue, its shape, or a
  // direction filled in): remembered for its flow's relay record, alerted, given its
  // context, and judged by a record that came before it.
  void SessionFound(const Event& session, std::vector<Event>& alerts);
  void RememberSession(const Event& finding);
  // A session named after its flow's relay record (flow_shape decides when the person's
  // input shows, which may be minutes into a session; the record comes at report_after):
  // the record kept for it gives the controller's round trip now.
  void LateSession(const Event& session, std::vector<Event>& publish);
  // Keeps a record whose flow goes on when a late session could still alert on it.
  void KeepForLateSession(const Event& record, const std::array<std::optional<double>, 2>& low_rtts,
                          bool client_responder);
  const Site* SiteOf(const IpAddress& host) const;
  absl::Duration LocalRtt(const IpAddress& host) const;
  void HiddenLeg(Event& finding, const IpAddress& host, std::vector<PacketTime> waits,
                 std::vector<Event>& publish);
  // A plain-HTTP request answered (relay_exchange): a possible fetch of its originator's.
  void RelayExchange(Event& finding);
  // A request and answer on a connection of `host`: it may explain turnarounds of flows
  // already in the host's hidden-leg window, and is kept for flows whose records come later.
  void Fetched(const IpAddress& host, PacketTime ts, const detectors::relay::Exchange& fetch);
  // Drops the sample's turnarounds that one of `fetches` fed, and moves its hidden leg by
  // what the lower quartile lost; returns how many were dropped.
  template <typename Fetches>
  std::size_t Explain(HostState::HiddenSample& sample, const Fetches& fetches);
  // The median, over the far flows (hidden leg at least budget_ms, whole answers), of the
  // client's wait to open over its answer; none unless at least half of them show a wait.
  static std::optional<double> OpeningRatio(const std::deque<HostState::HiddenSample>& hidden,
                                            double budget_ms);
  void RoutedRelay(const Event& finding, const IpAddress& host, bool originated,
                   std::vector<Event>& publish);
  // low_rtts: the 15th percentiles of the record's samples toward [originator, responder];
  // client_responder: the record's turnarounds are the responder's answers.
  void ControllerRtt(Event& finding, const std::array<std::optional<double>, 2>& low_rtts,
                     bool client_responder, std::vector<Event>& publish);
  // ssh: the flow is an SSH session (kept for stepping stones across hosts when outbound).
  void SteppingStones(const Event& finding, const IpAddress& host, bool inbound,
                      const IpAddress& peer, OnPeriods periods, bool ssh,
                      std::vector<Event>& publish);
  // The pair of one host's inbound flow `in` (from outside) and one home host's outbound
  // flow `out`: a stepping stone when one of the tests matches with a chance of at most
  // `max_p` each (`leg`: the larger of the hosts' own legs, by which the windows grow).
  struct StoneMatch;
  std::optional<StoneMatch> MatchStone(const HostState::OnFlow& in, const HostState::OnFlow& out,
                                       absl::Duration leg, double max_p) const;
  void PublishStone(const Event& finding, const IpAddress& host, const IpAddress& in_host,
                    const IpAddress& controller, std::uint64_t in_flow, std::uint64_t out_flow,
                    const StoneMatch& m, double pairs, std::vector<Event>& publish);
  // Across hosts: `self` (of `host`) against the kept flows of other home hosts of its site,
  // then kept itself if it is an inbound flow from outside or an outbound SSH flow.
  void SteppingStonesAcrossHosts(const Event& finding, const IpAddress& host,
                                 const HostState::OnFlow& self, bool ssh,
                                 std::vector<Event>& publish);
  // The typing baseline: a home host's output -> next key delays in its own SSH sessions
  // against the same host's history.
  void Typing(const Event& finding, const IpAddress& host, std::vector<double> reactions,
              std::vector<Event>& publish);
  nlohmann::json SaveTypingProfiles() const;
  std::string PersonOf(const IpAddress& host) const;  // the inventory's person, or ""
  absl::Status LoadTypingProfiles(const nlohmann::json& profiles, const std::string& path);
  // stack records: devices behind one public address at the entry points
  // (host_stage_shared_line.cc).
  void StackRecord(const Event& finding, std::vector<Event>& publish);
  bool IsEntryPoint(const IpAddress& address) const;
  // A connection to one of the tunnel services in detectors.stack.vpn_ports.
  bool IsVpnService(const FlowRef& flow) const;
  // tunnel records: nesting (a company tunnel inside another), and a device that leaves its
  // usual link for a tunnel. `device` names the device: a home host, or a public address
  // and stack at an entry point (host_stage_tunnel.cc).
  void TunnelRecord(Event& finding, std::vector<Event>& publish);
  // path_mtu findings: a device's segments at or above the MTU its SYN's MSS implies.
  void PathMtuRecord(const Event& finding, std::vector<Event>& publish);
  struct PathEvidence;
  // The evidence of one device (public address + SYN signature), created if absent.
  PathEvidence& FindPath(const std::string& key, PacketTime now);
  void NestedTunnelAlert(const Event& record, std::vector<Event>& publish);
  void LinkHistory(const std::string& device, const IpAddress& host, bool tunnel,
                   const Event& finding, std::vector<Event>& publish);
  // Context rules (host_stage_context.cc). EnrichAlert adds the inventory's asset and the
  // peer's country, AS and lists to an alert; the rest raise work_hours, address_list and geo
  // alerts from stack records (connections) and remote sessions.
  void EnrichAlert(Event& alert) const;
  void ContextConnection(const Event& finding, std::vector<Event>& publish);
  void ContextSession(const Event& finding, std::vector<Event>& publish);
  void ContextTunnel(Event& finding) const;
  void WorkActivity(const IpAddress& host, PacketTime ts, bool session,
                    std::vector<Event>& publish);
  void ListedPeer(const IpAddress& host, const IpAddress& peer, bool entry_point,
                  bool vpn_port, const Event& finding, std::vector<Event>& publish);
  // Work-hours profiles in the state file: a profile needs days of activity to say anything,
  // so a restart must not start it over. A host whose inventory zone changed starts afresh.
  nlohmann::json SaveWorkProfiles() const;
  absl::Status ReadState(const std::string& path);  // LoadState's reading, may throw
  absl::Status LoadWorkProfiles(const nlohmann::json& profiles, const std::string& path);
  // Risk score: every published alert is evidence against its host.
  void ScoreAlert(const Event& alert, std::vector<Event>& publish);
  HostScore ScoreOf(const IpAddress& host, const HostState& state, PacketTime now) const;
  void RefreshTopScores(PacketTime now);
  // An alert about `host` (on `flow` when there is one) with the rule's identity filled in.
  static Event NewAlert(PacketTime ts, const std::optional<FlowRef>& flow, const IpAddress& host,
                        std::uint32_t signature_id, std::string signature, std::string category,
                        int severity, std::string detector);
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
  absl::flat_hash_map<std::uint64_t, NamedFlow> named_flows_;
  absl::flat_hash_map<std::uint64_t, SessionEnds> sessions_;
  struct LateRecord {
    Event record;
    std::array<std::optional<double>, 2> low_rtts;
    bool client_responder = false;
  };
  absl::flat_hash_map<std::uint64_t, LateRecord> late_records_;  // by flow id
  // One public address seen at the entry points: its connections' stack records.
  struct Line {
    struct Connection {
      PacketTime syn;
      PacketTime end;
      std::string signature;
      IpAddress dst;
      std::uint16_t dport = 0;
      std::uint16_t sport = 0;
      std::optional<double> ts_hz;
      bool vpn = false;  // to a VPN service port (detectors.stack.vpn_ports)
      bool udp = false;
      // The flow's non-zero IP-IDs when they came from a counter the device shares with other
      // packets (every step forward, some by 2 or more): the counter's value at `first_time`
      // and how far it moved until `last_time`.
      struct IpIdRun {
        PacketTime first_time;
        PacketTime last_time;
        std::uint16_t first = 0;
        std::uint64_t advance = 0;
      };
      std::optional<IpIdRun> ip_id_run;
    };
    std::deque<Connection> connections;
    std::uint64_t reported_devices = 0;
    PacketTime last_seen;
  };
  absl::flat_hash_map<IpAddress, Line> lines_;
  // Per device: SYNs on a plain link and on a tunnel, and when last seen.
  struct LinkCounts {
    std::uint64_t plain = 0;
    std::uint64_t tunnel = 0;
    PacketTime last_seen;
  };
  absl::flat_hash_map<std::string, LinkCounts> links_;
  // Work-hours profile per inventory host with a time zone, fed with worked minutes.
  struct WorkProfile {
    explicit WorkProfile(absl::TimeZone zone) : profile(zone) {}
    detectors::context::WorkHoursProfile profile;
    std::int64_t minute = 0;        // the minute (Unix minutes) being counted
    std::uint32_t connections = 0;  // opened in it
    std::uint32_t reported_hours = 0;
    PacketTime alerted = absl::InfinitePast();
    PacketTime last_seen;
  };
  absl::flat_hash_map<IpAddress, WorkProfile> work_profiles_;
  // Per home host: its person's output -> next key delays (ms). `recent` holds the latest
  // reactions (up to the longest window), judged every half window; `baseline` is the
  // history: the first typing_baseline_samples, then the reactions that left `recent`.
  struct TypingProfile {
    std::deque<double> baseline;
    std::deque<double> recent;
    std::uint64_t fresh = 0;  // delays in `recent` not judged yet
    bool far = false;         // the last judgement's verdict: the history waits meanwhile
    std::string person;       // the inventory's person when the baseline began ("": none)
    PacketTime last_seen;
  };
  absl::flat_hash_map<IpAddress, TypingProfile> typing_profiles_;
  // Stepping stones across hosts: the latest inbound flows from outside and outbound SSH
  // flows of every home host, at most kMaxCrossHostInbound and kMaxCrossHostOutbound
  // (kMaxCrossHostFlowsPerHost of each direction a host) and none older than relay.window.
  struct CrossHostFlow {
    IpAddress host;
    std::string site;  // its site's name when kept ("": none), read once, not per pairing
    HostState::OnFlow flow;
  };
  std::deque<CrossHostFlow> cross_host_in_;
  std::deque<CrossHostFlow> cross_host_out_;
  // Countries that controlled one person's hosts (inventory `person`), oldest first.
  absl::flat_hash_map<std::string, std::deque<std::pair<PacketTime, std::string>>>
      person_countries_;
  // Per device (source address + SYN signature with MSS): did its own segments fill or
  // exceed the MTU its MSS implies, and a company-VPN session's tunnel record waiting for
  // that answer. At most kMaxPathDevices; expired, then idlest, entries are evicted.
  struct PathEvidence {
    bool at_mtu = false;
    bool above_mtu = false;
    std::optional<Event> pending;
    PacketTime last_seen = absl::InfinitePast();
  };
  static constexpr std::size_t kMaxPathDevices = 65536;
  absl::flat_hash_map<std::string, PathEvidence> paths_;
  PacketTime now_ = absl::InfinitePast();  // the latest finding's time
  PacketTime top_scores_at_ = absl::InfinitePast();
  mutable absl::Mutex mu_;
  std::optional<HostStageConfig> pending_config_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> has_pending_config_{false};
  HostStageStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relaywatch::host
