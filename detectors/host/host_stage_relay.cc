// The host stage's relay rules: a host is judged on many flows over a window, never on one
// slow handshake. See docs/detectors/relay.md for the methods and their limits.
#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <functional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

#include "detectors/host/finding_fields.h"
#include "detectors/host/host_stage.h"
#include "detectors/host/tables.h"
#include "detectors/relay/timing.h"

namespace relaywatch::host {
namespace {

using detectors::relay::FibreKm;

constexpr std::size_t kMaxHiddenSamples = 64;

// Makes room for one more finding in a host's window: drops those older than `window`, and
// the oldest beyond kMaxHiddenSamples.
template <typename Finding>
void MakeRoom(std::deque<Finding>& findings, PacketTime now, absl::Duration window) {
  while (!findings.empty() &&
         (now - findings.front().ts > window || findings.size() >= kMaxHiddenSamples)) {
    findings.pop_front();
  }
}
constexpr std::size_t kMaxOnFlows = 32;
// The packet-level stepping-stone test: a relay forwards nearly every packet it gets (in the
// lab 96-100 % of an `ssh -J` hop's or a proxy's, 0.1-0.3 ms later in the median), while
// independent sessions match only by coincidence. Half leaves room for a relay that splits or
// merges what it forwards.
constexpr double kMinForwardedShare = 0.5;
// Exchanges kept per host as possible fetches: a few minutes of a busy browser's.
constexpr std::size_t kMaxFetches = 128;
constexpr std::size_t kMaxSessions = 65536;
// Relay records kept for sessions named late: only those that could alert, so a few per
// far peer; the oldest go first when full.
constexpr std::size_t kMaxLateRecords = 4096;
// The typing baseline judges the last 1, 2, 4, ... windows of reactions, up to the longest
// window the config allows (rounded down to a power of two of windows).
std::vector<std::size_t> TypingWindows(const detectors::relay::RelayConfig& c) {
  std::vector<std::size_t> sizes;
  for (std::size_t n = c.typing_window_samples; n <= c.typing_longest_window_samples; n *= 2)
    sizes.push_back(n);
  return sizes;
}

double Round1(double v) {
  return std::round(v * 10.0) / 10.0;
}

double Round3(double v) {
  return std::round(v * 1000.0) / 1000.0;
}

}  // namespace

const Site* HostStage::SiteOf(const IpAddress& host) const {
  for (const Site& site : config_.sites) {
    if (AnyContains(site.networks, host))
      return &site;
  }
  return nullptr;
}

absl::Duration HostStage::LocalRtt(const IpAddress& host) const {
  const Site* site = SiteOf(host);
  return site ? site->local_rtt : config_.relay.local_rtt;
}

void HostStage::RememberSession(const Event& finding) {
  // Sessions are kept only to find the controller's leg in their relay record.
  if (!finding.flow || !config_.relay.methods.controller_rtt) {
    return;
  }
  absl::StatusOr<IpAddress> controlled = IpAddress::Parse(finding.body.value("controlled", ""));
  absl::StatusOr<IpAddress> controller = IpAddress::Parse(finding.body.value("controller", ""));
  if (!controlled.ok() || !controller.ok())
    return;
  if (sessions_.size() >= kMaxSessions) {
    // Sessions whose relay record never came (report_after bounds the wait) go first.
    const std::size_t before = sessions_.size();
    absl::erase_if(sessions_, [&](const auto& kv) {
      return finding.ts - kv.second.ts > config_.relay.report_after + absl::Minutes(10);
    });
    if (sessions_.size() >= kMaxSessions)
      sessions_.clear();
    absl::MutexLock lock(&mu_);
    stats_.sessions_evicted += before - sessions_.size();
  }
  sessions_[finding.flow->flow_id] =
      SessionEnds{*controlled, *controller, finding.body.value("app", ""), finding.ts};
}

void HostStage::PublishAlert(Event alert, std::vector<Event>& publish) {
  {
    absl::MutexLock lock(&mu_);
    ++stats_.alerts[{alert.alert->detector, alert.alert->severity}];
  }
  publish.push_back(std::move(alert));
}

namespace {

// Output -> next key delays travel with SSH relay records (and windows) for the typing
// baseline only.
std::vector<double> TakeReactions(nlohmann::json& body) {
  std::vector<double> delays;
  if (body.contains("_reactions_ms") && body["_reactions_ms"].is_array()) {
    for (const nlohmann::json& d : body["_reactions_ms"]) {
      if (d.is_number() && d.get<double>() >= 0)
        delays.push_back(d.get<double>());
    }
  }
  body.erase("_reactions_ms");
  return delays;
}

// A record's array of numbers (ms), skipping anything else in it.
std::vector<double> Numbers(const nlohmann::json& body, const char* key) {
  std::vector<double> values;
  if (body.contains(key) && body[key].is_array()) {
    for (const nlohmann::json& v : body[key]) {
      if (v.is_number())
        values.push_back(v.get<double>());
    }
  }
  return values;
}

// Times (unix microseconds) that travel with relay records for this stage only: ON times
// (`_on_times_us`, stepping stones) and turnaround waits (`_waits_us`, hidden leg).
std::vector<PacketTime> TakeTimes(nlohmann::json& body, const char* key) {
  std::vector<PacketTime> times;
  if (body.contains(key) && body[key].is_array()) {
    for (const nlohmann::json& t : body[key]) {
      if (t.is_number_integer())
        times.push_back(absl::FromUnixMicros(t.get<std::int64_t>()));
    }
  }
  body.erase(key);
  return times;
}

// Two round trips in ms, [toward the originator, toward the responder], that travel with
// relay records for this stage only (`_rtt_p15_ms`, `_on_legs_ms`).
std::array<std::optional<double>, 2> TakeMsPair(nlohmann::json& body, const char* key) {
  std::array<std::optional<double>, 2> pair;
  if (body.contains(key) && body[key].is_array() && body[key].size() == 2) {
    for (std::size_t i = 0; i < 2; ++i) {
      const nlohmann::json& v = body[key][i];
      if (v.is_number() && v.get<double>() >= 0)
        pair[i] = v.get<double>();
    }
  }
  body.erase(key);
  return pair;
}

HostStage::OnPeriods TakeOnTimes(nlohmann::json& body) {
  HostStage::OnPeriods periods{TakeTimes(body, "_on_times_us"),
                               TakeMsPair(body, "_on_legs_ms"),
                               TakeTimes(body, "_packet_times_us"),
                               TakeTimes(body, "_output_on_times_us"),
                               TakeTimes(body, "_burst_starts_us"),
                               TakeTimes(body, "_update_times_us"),
                               body.contains("_coalesced") && body["_coalesced"].is_boolean() &&
                                   body["_coalesced"].get<bool>()};
  body.erase("_coalesced");
  // In capture order; a capture whose clock went back would leave them out of time order,
  // which the packet correlation walks in and the shown output searches.
  std::sort(periods.packets.begin(), periods.packets.end());
  std::sort(periods.updates.begin(), periods.updates.end());
  return periods;
}

// A flow's exchanges as possible fetches (`_exchanges_us`: [start, answered, next request
// or -1], for this stage only).
std::vector<detectors::relay::Exchange> TakeExchanges(nlohmann::json& body) {
  std::vector<detectors::relay::Exchange> exchanges;
  if (body.contains("_exchanges_us") && body["_exchanges_us"].is_array()) {
    for (const nlohmann::json& x : body["_exchanges_us"]) {
      if (!x.is_array() || x.size() != 3 || !x[0].is_number_integer() ||
          !x[1].is_number_integer() || !x[2].is_number_integer()) {
        continue;
      }
      const std::int64_t next = x[2].get<std::int64_t>();
      exchanges.push_back({absl::FromUnixMicros(x[0].get<std::int64_t>()),
                           absl::FromUnixMicros(x[1].get<std::int64_t>()),
                           next < 0 ? absl::InfiniteFuture() : absl::FromUnixMicros(next)});
    }
  }
  body.erase("_exchanges_us");
  return exchanges;
}

// The 15th percentiles of a relay record's data -> ACK samples toward [originator,
// responder] (`_rtt_p15_ms`, for this stage only; null where too few).
std::array<std::optional<double>, 2> TakeLowRtts(nlohmann::json& body) {
  return TakeMsPair(body, "_rtt_p15_ms");
}

// The controller's round trip from its floor (the least of the handshake leg and the
// robust floor of the data -> ACK samples) and their 15th percentile. Queueing only adds
// delay, so a floor it is; but on a path whose delay varies both ways about its mean (a radio
// link, a delay line) the floor of a few hundred samples reads 2-3 standard deviations short
// and the 15th percentile one. The estimate moves from the floor toward that percentile, by
// at most a quarter of the floor: a queue that holds nearly every sample (a near controller
// behind a bufferbloated home line) cannot move it far, a symmetric jitter of 10 ms on an 80
// ms path no longer takes it under a 60 ms budget.
constexpr double kControllerRttCredit = 1.25;
// The controller's hidden leg is the lower quartile of its turnarounds: with three or more,
// one slow answer does not make it.
constexpr std::size_t kMinControllerTurnarounds = 3;

double ControllerRttMs(double floor_ms, std::optional<double> p15_ms) {
  if (!p15_ms || *p15_ms <= floor_ms)
    return floor_ms;
  return std::round(std::min(*p15_ms, floor_ms * kControllerRttCredit) * 1000) / 1000;
}

// Between a fetch's answer and the client's own flight: the client's visible leg, and the
// client's work on the answer (parsing and checking an OCSP response or a certificate, a
// few ms; room for a slow client).
constexpr double kFetchSlackMs = 20;
// An SSH flow whose lower quartile was a turnaround a fetch fed keeps a reading from the
// rest only if at least this many are left: an SSH setup is a dialogue of software answers,
// so their lower quartile still sits among network turnarounds. A TLS flow's later
// turnarounds are its application's (a request after a response, with think time), and of
// one or two the quartile is the slow ones: such flows give no reading.
constexpr std::size_t kMinTurnaroundsLeft = 3;

// Two kept flows are paired only when their times come within this (and both hosts' legs)
// of each other: more than any window a test moves or widens by.
constexpr absl::Duration kCrossHostOverlapSlack = absl::Seconds(2);

// How many (inbound, outbound) pairs of these spans come within `slack` of each other: the
// pairs that can ever be tested, so the family a coincidence is counted over. Sorting the
// outbound ends counts them in n log n: an outbound span misses an inbound one only by
// starting after its end plus slack, or by ending before its start minus slack, and every
// span of the second kind starts before the inbound end, so it is in the first count.
double OverlappingPairs(const std::vector<std::pair<PacketTime, PacketTime>>& in,
                        const std::vector<std::pair<PacketTime, PacketTime>>& out,
                        absl::Duration slack) {
  std::vector<PacketTime> starts;
  std::vector<PacketTime> ends;
  starts.reserve(out.size());
  ends.reserve(out.size());
  for (const auto& [first, last] : out) {
    starts.push_back(first);
    ends.push_back(last);
  }
  std::sort(starts.begin(), starts.end());
  std::sort(ends.begin(), ends.end());
  double pairs = 0;
  for (const auto& [first, last] : in) {
    const auto started = std::upper_bound(starts.begin(), starts.end(), last + slack);
    const auto ended = std::lower_bound(ends.begin(), ends.end(), first - slack);
    pairs += static_cast<double>((started - starts.begin()) - (ended - ends.begin()));
  }
  return pairs;
}

}  // namespace

void HostStage::RelayOnWindow(Event& finding, std::vector<Event>& publish) {
  OnPeriods periods = TakeOnTimes(finding.body);
  std::vector<double> reactions = TakeReactions(finding.body);
  if (!finding.flow)
    return;
  const FlowRef& f = *finding.flow;
  if (config_.relay.methods.keystrokes && IsHome(f.src_ip) && !reactions.empty())
    Typing(finding, f.src_ip, std::move(reactions), publish);
  if (!config_.relay.methods.stepping_stone)
    return;
  const bool ssh = finding.body.value("_ssh", false);
  if (IsHome(f.src_ip)) {
    SteppingStones(finding, f.src_ip, false, f.dest_ip, std::move(periods), ssh, publish);
  } else if (IsHome(f.dest_ip)) {
    SteppingStones(finding, f.dest_ip, true, f.src_ip, std::move(periods), ssh, publish);
  }
}

void HostStage::RelayExchange(Event& finding) {
  const std::vector<detectors::relay::Exchange> exchanges = TakeExchanges(finding.body);
  if (!finding.flow || !config_.relay.methods.hidden_leg || !IsHome(finding.flow->src_ip))
    return;
  for (const detectors::relay::Exchange& x : exchanges)
    Fetched(finding.flow->src_ip, finding.ts, x);
}

void HostStage::Relay(Event& finding, std::vector<Event>& publish) {
  {
    absl::MutexLock lock(&mu_);
    ++stats_.relay_records;
  }
  nlohmann::json& r = finding.body;
  OnPeriods periods = TakeOnTimes(r);
  std::vector<double> reactions = TakeReactions(r);
  std::vector<PacketTime> waits = TakeTimes(r, "_waits_us");
  const std::vector<detectors::relay::Exchange> exchanges = TakeExchanges(r);
  const std::array<std::optional<double>, 2> low_rtts = TakeLowRtts(r);
  const bool client_responder = r.value("_client_responder", false);
  r.erase("_client_responder");
  const bool open = r.value("_open", false);
  r.erase("_open");
  if (!finding.flow)
    return;
  // A method switched off in detectors.relay.methods neither alerts nor adds fields here.
  const detectors::relay::RelayMethods& methods = config_.relay.methods;
  if (methods.controller_rtt) {
    if (open && !sessions_.contains(finding.flow->flow_id))
      KeepForLateSession(finding, low_rtts, client_responder);
    ControllerRtt(finding, low_rtts, client_responder, publish);
  }
  const FlowRef& f = *finding.flow;
  const bool src_home = IsHome(f.src_ip);
  const bool dest_home = IsHome(f.dest_ip);
  if (src_home) {
    if (methods.hidden_leg) {
      for (const detectors::relay::Exchange& x : exchanges)
        Fetched(f.src_ip, finding.ts, x);
      HiddenLeg(finding, f.src_ip, std::move(waits), publish);
    }
    if (methods.stepping_stone) {
      SteppingStones(finding, f.src_ip, false, f.dest_ip, std::move(periods),
                     r.value("app", "") == "ssh", publish);
    }
    if (methods.keystrokes && !reactions.empty()) {
      Typing(finding, f.src_ip, std::move(reactions), publish);
    }
  } else if (dest_home && methods.stepping_stone) {
    SteppingStones(finding, f.dest_ip, true, f.src_ip, std::move(periods),
                   r.value("app", "") == "ssh", publish);
  }
  if (methods.routed_relay) {
    if (src_home)
      RoutedRelay(finding, f.src_ip, true, publish);
    if (dest_home)
      RoutedRelay(finding, f.dest_ip, false, publish);
  }
}

void HostStage::ControllerRtt(Event& finding, const std::array<std::optional<double>, 2>& low_rtts,
                              bool client_responder, std::vector<Event>& publish) {
  auto it = sessions_.find(finding.flow->flow_id);
  if (it == sessions_.end())
    return;
  const SessionEnds s = it->second;
  sessions_.erase(it);
  nlohmann::json& r = finding.body;
  const bool controller_is_src = s.controller == finding.flow->src_ip;
  const std::optional<double> floor =
      Number(r, controller_is_src ? "rtt_originator_ms" : "rtt_responder_ms");
  if (!floor)
    return;
  const std::optional<double> p15 = low_rtts[controller_is_src ? 0 : 1];
  const double rtt = ControllerRttMs(*floor, p15);
  r["controller_rtt_ms"] = rtt;
  r["controller_distance_km"] = std::round(FibreKm(rtt));
  // The controlling peer may only forward for the person (a rented server near the laptop,
  // an ssh -L or socat on it): then the controller's own answers (an RFB viewer's answers
  // in its setup, an SSH client's key exchange, an RDP client's TLS handshake or MCS Connect
  // Initial) come from beyond it, and their turnaround is the person's round trip from the sensor.
  // It counts when it exceeds the peer's typical round trip (its smoothed one: a turnaround is one
  // draw of a jittery path, which its floor would call a leg) by half the budget; under that it may
  // be the client's own work (an SSH client's post-quantum key exchange: 15 ms in the lab) or
  // jitter. TLS, and RDP's standard security, only by the handshake's answer, which software sends
  // at once (an RDP client's later answers wait 90-100 ms on their own). A lower bound (every
  // flight came in parts, which a forwarder may have held) is as good: the leg is at least
  // that.
  const double budget_ms = detectors::relay::ToMs(LocalRtt(s.controlled));
  const std::optional<double> hidden = Number(r, "hidden_leg_rtt_ms");
  const std::optional<double> turnaround = Number(r, "turnaround_ms");
  const double typical = std::max(
      rtt, Number(r, controller_is_src ? "srtt_originator_ms" : "srtt_responder_ms").value_or(rtt));
  const std::string timed_app = r.value("app", "");  // the protocol the relay detector timed
  const bool by_handshake = timed_app == "tls" || timed_app == "rdp";
  std::optional<double> operator_rtt;
  if (hidden && turnaround && controller_is_src != client_responder &&
      Numbers(r, "turnaround_samples_ms").size() >= kMinControllerTurnarounds &&
      (!by_handshake || r.contains("handshake_turnaround_ms")) &&
      *turnaround - typical >= budget_ms / 2) {
    operator_rtt = *turnaround;
    r["operator_rtt_ms"] = Round1(*operator_rtt);
    r["operator_distance_km"] = std::round(FibreKm(*operator_rtt));
  }
  // Samples toward the controller: its data/ACK samples plus the handshake's.
  std::uint64_t samples = 0;
  if (r.contains("rtt_samples") && r["rtt_samples"].is_array() && r["rtt_samples"].size() == 2) {
    samples = r["rtt_samples"][controller_is_src ? 0 : 1].get<std::uint64_t>();
  }
  if (!IsHome(s.controlled) || IsHome(s.controller) || samples < config_.relay.min_samples) {
    return;
  }
  if (operator_rtt.value_or(rtt) < budget_ms)
    return;
  if (Allowed(s.app, s.controlled, s.controller))
    return;
  if (!Admit(s.controlled, absl::StrCat(kSidControllerRtt, "/", s.controller.ToString()),
             finding.ts)) {
    return;
  }
  Event alert =
      NewAlert(finding.ts, finding.flow, s.controlled, kSidControllerRtt,
               absl::StrCat("RELAYWATCH remote-control session driven from far away (", s.app, ", ",
                            Round1(operator_rtt.value_or(rtt)), " ms round trip",
                            operator_rtt ? " beyond its peer" : "", ")"),
               "Relay", 2, "controller_rtt");
  const Site* site = SiteOf(s.controlled);
  alert.evidence = {{"method", "controller_rtt"},
                    {"app", s.app},
                    {"controlled", s.controlled.ToString()},
                    {"controller", s.controller.ToString()},
                    {"controller_rtt_ms", rtt},
                    {"controller_rtt_floor_ms", *floor},
                    {"controller_distance_km", std::round(FibreKm(rtt))},
                    {"rtt_samples", samples},
                    {"local_rtt_ms", budget_ms},
                    {"site", site ? site->name : ""}};
  if (p15)
    alert.evidence["controller_rtt_p15_ms"] = *p15;
  // A session through a TURN server: the controller above is the server; the person's agent
  // is the peer its ICE checks went to.
  if (r.contains("stun") && r["stun"].contains("turn_peer"))
    alert.evidence["turn_peer"] = r["stun"]["turn_peer"];
  if (operator_rtt) {
    alert.evidence["controller_hidden_leg_ms"] = *hidden;
    if (r.value("hidden_leg_lower_bound", false))
      alert.evidence["controller_hidden_leg_lower_bound"] = true;
    alert.evidence["operator_rtt_ms"] = Round1(*operator_rtt);
    alert.evidence["operator_distance_km"] = std::round(FibreKm(*operator_rtt));
  }
  PublishAlert(std::move(alert), publish);
}

void HostStage::KeepForLateSession(const Event& record,
                                   const std::array<std::optional<double>, 2>& low_rtts,
                                   bool client_responder) {
  const FlowRef& f = *record.flow;
  if (IsHome(f.src_ip) == IsHome(f.dest_ip))
    return;  // a session needs a home host controlled from outside
  // Only a record that could alert: a leg whose floor, moved toward its 15th percentile by
  // at most kControllerRttCredit, reaches the budget, or answers from beyond a forwarder
  // that do.
  const double budget_ms =
      detectors::relay::ToMs(LocalRtt(IsHome(f.src_ip) ? f.src_ip : f.dest_ip));
  double reach = 0;
  for (const char* key : {"rtt_originator_ms", "rtt_responder_ms"})
    reach = std::max(reach, Number(record.body, key).value_or(0) * kControllerRttCredit);
  reach = std::max(reach, Number(record.body, "turnaround_ms").value_or(0));
  if (reach < budget_ms)
    return;
  if (late_records_.size() >= kMaxLateRecords) {
    late_records_.erase(Oldest(late_records_, [](const LateRecord& r) { return r.record.ts; }));
    absl::MutexLock lock(&mu_);
    ++stats_.late_records_evicted;
  }
  late_records_[f.flow_id] = LateRecord{record, low_rtts, client_responder};
}

void HostStage::LateSession(const Event& session, std::vector<Event>& publish) {
  if (!session.flow)
    return;
  auto it = late_records_.find(session.flow->flow_id);
  if (it == late_records_.end())
    return;
  LateRecord late = std::move(it->second);
  late_records_.erase(it);
  if (!sessions_.contains(session.flow->flow_id))
    return;  // not a session of a home host controlled from outside (RememberSession)
  {
    absl::MutexLock lock(&mu_);
    ++stats_.late_sessions_paired;
  }
  // The alert is the session's, now; the record went out long ago.
  late.record.ts = session.ts;
  ControllerRtt(late.record, late.low_rtts, late.client_responder, publish);
}

template <typename Fetches>
std::size_t HostStage::Explain(HostState::HiddenSample& sample, const Fetches& fetches) {
  if (sample.waits.size() != sample.samples_ms.size() || sample.samples_ms.empty())
    return 0;  // a record without its waits: nothing to match
  const auto turnaround = [&sample] {
    return detectors::relay::ReadTurnaround(sample.samples_ms, sample.spreads_ms,
                                            sample.handshake_ms, sample.client_leg_ms,
                                            sample.connect_wait_ms, sample.app == "ssh");
  };
  const double before = turnaround().ms;
  std::size_t kept = 0;
  bool rested = false;  // the flow's reading rested on a turnaround a fetch fed
  for (std::size_t i = 0; i < sample.samples_ms.size(); ++i) {
    const bool fed = std::any_of(fetches.begin(), fetches.end(), [&](const auto& f) {
      return detectors::relay::FedWait(f, sample.waits[i], sample.samples_ms[i],
                                       sample.client_leg_ms + kFetchSlackMs);
    });
    if (fed) {
      rested = rested || sample.samples_ms[i] <= before;
      if (i == 0)
        sample.handshake_ms.reset();
    } else {
      sample.samples_ms[kept] = sample.samples_ms[i];
      sample.waits[kept] = sample.waits[i];
      sample.spreads_ms[kept] = sample.spreads_ms[i];
      ++kept;
    }
  }
  const std::size_t dropped = sample.samples_ms.size() - kept;
  sample.samples_ms.resize(kept);
  sample.waits.resize(kept);
  sample.spreads_ms.resize(kept);
  if (rested && (kept < kMinTurnaroundsLeft || sample.app != "ssh")) {
    // The turnarounds left are the flow's slower ones (a close_notify that waited for a
    // download, a request after think time): they cannot stand for it, so no reading.
    sample.samples_ms.clear();
    sample.waits.clear();
    sample.spreads_ms.clear();
  } else if (dropped > 0) {
    const detectors::relay::FlowTurnaround after = turnaround();
    sample.hidden_ms = std::max(0.0, sample.hidden_ms + after.ms - before);
    sample.lower_bound = after.lower_bound;
    sample.by_connect_wait = after.by_connect_wait;
  }
  if (dropped > 0) {
    absl::MutexLock lock(&mu_);
    stats_.turnarounds_explained += dropped;
  }
  return dropped;
}

void HostStage::Fetched(const IpAddress& host, PacketTime ts,
                        const detectors::relay::Exchange& fetch) {
  // Only an exchange answered within a turnaround's longest wait can have fed one.
  if (fetch.answered - fetch.start > config_.relay.max_turnaround)
    return;
  HostState& state = Host(host, ts);
  const std::array<detectors::relay::Exchange, 1> one = {fetch};
  for (auto s = state.hidden.begin(); s != state.hidden.end();) {
    Explain(*s, one);
    s = s->samples_ms.empty() ? state.hidden.erase(s) : s + 1;
  }
  // An exchange told again as more of its answer came: the later telling replaces it.
  for (auto f = state.fetches.rbegin(); f != state.fetches.rend(); ++f) {
    if (f->start == fetch.start) {
      *f = fetch;
      return;
    }
  }
  // A flow's record comes at its end or report_after past its start, so the fetches its
  // waits may need are at most that old (twice, for records queued behind others).
  while (!state.fetches.empty() &&
         (ts - state.fetches.front().start > 2 * config_.relay.report_after ||
          state.fetches.size() >= kMaxFetches)) {
    if (state.fetches.size() >= kMaxFetches) {
      absl::MutexLock lock(&mu_);
      ++stats_.fetches_evicted;
    }
    state.fetches.pop_front();
  }
  state.fetches.push_back(fetch);
}

// A relay's far client waits one hidden round trip to open, or two when it held its first
// data for an ACK, and each answer costs one: in the lab the median is 0.74-1.23 on every
// relayed host (docs/relay-quality.md, "A client slow to open").
std::optional<double> HostStage::OpeningRatio(const std::deque<HostState::HiddenSample>& hidden,
                                              double budget_ms) {
  std::vector<double> ratios;
  std::size_t far = 0;
  for (const HostState::HiddenSample& s : hidden) {
    if (s.lower_bound || s.hidden_ms < budget_ms)
      continue;
    ++far;
    const double answer_ms = s.hidden_ms + s.client_leg_ms;
    if (s.opening_wait_ms && answer_ms > 0)
      ratios.push_back(*s.opening_wait_ms / answer_ms);
  }
  if (ratios.empty() || 2 * ratios.size() < far)
    return std::nullopt;
  return detectors::relay::Median(ratios);
}

void HostStage::HiddenLeg(Event& finding, const IpAddress& host, std::vector<PacketTime> waits,
                          std::vector<Event>& publish) {
  nlohmann::json& r = finding.body;
  const std::optional<double> hidden = Number(r, "hidden_leg_rtt_ms");
  if (!hidden)
    return;
  if (AnyContains(config_.relay.hidden_leg_exempt_servers, finding.flow->dest_ip)) {
    r["hidden_leg_exempt"] = true;
    absl::MutexLock lock(&mu_);
    ++stats_.hidden_leg_exempt_flows;
    return;
  }
  HostState::HiddenSample sample;
  sample.ts = finding.ts;
  sample.hidden_ms = *hidden;
  sample.flow_id = finding.flow->flow_id;
  sample.app = r.value("app", "");
  sample.server = finding.flow->dest_ip.ToString();
  sample.server_port = finding.flow->dest_port;
  sample.samples_ms = Numbers(r, "turnaround_samples_ms");
  if (sample.samples_ms.empty())
    return;
  if (const std::optional<double> handshake = Number(r, "handshake_turnaround_ms"))
    sample.handshake_ms = std::min(*handshake, sample.samples_ms.front());
  sample.waits = std::move(waits);
  sample.spreads_ms = Numbers(r, "turnaround_flight_spread_ms");
  // A record without them (or not one each): every flight counts as whole, as before.
  if (sample.spreads_ms.size() != sample.samples_ms.size())
    sample.spreads_ms.assign(sample.samples_ms.size(), 0.0);
  sample.lower_bound = r.value("hidden_leg_lower_bound", false);
  sample.connect_wait_ms = Number(r, "connect_wait_ms");
  sample.by_connect_wait = r.value("hidden_leg_by_connect_wait", false);
  sample.opening_wait_ms =
      r.contains("proxy") ? Number(r, "tunnel_wait_ms") : sample.connect_wait_ms;
  // The record's turnaround is what its hidden leg was read from.
  sample.client_leg_ms = std::max(0.0, Number(r, "turnaround_ms")
                                               .value_or(detectors::relay::TurnaroundMs(
                                                   sample.samples_ms, sample.handshake_ms)) -
                                           *hidden);
  HostState& state = Host(host, finding.ts);
  if (const std::size_t explained = Explain(sample, state.fetches); explained > 0) {
    // The record says what the decision used: the leg of the turnarounds left, if any
    // (turnaround_samples_ms keeps every one as measured).
    r["turnarounds_explained"] = explained;
    if (sample.samples_ms.empty()) {
      r.erase("turnaround_ms");
      r.erase("hidden_leg_rtt_ms");
      r.erase("min_distance_km");
      return;  // every wait was a fetch's
    }
    r["turnaround_ms"] = detectors::relay::ReadTurnaround(
                             sample.samples_ms, sample.spreads_ms, sample.handshake_ms,
                             sample.client_leg_ms, sample.connect_wait_ms, sample.app == "ssh")
                             .ms;
    r["hidden_leg_rtt_ms"] = Round3(sample.hidden_ms);
    r["min_distance_km"] = std::round(FibreKm(sample.hidden_ms));
    for (const auto& [field, set] :
         {std::pair("hidden_leg_lower_bound", sample.lower_bound),
          std::pair("hidden_leg_by_connect_wait", sample.by_connect_wait)}) {
      if (set)
        r[field] = true;
      else
        r.erase(field);
    }
  }
  MakeRoom(state.hidden, finding.ts, config_.relay.window);
  state.hidden.push_back(std::move(sample));
  const double budget_ms = detectors::relay::ToMs(LocalRtt(host));
  // Three ways to enough evidence. (1) The median over the window's flows once they hold
  // min_samples turnarounds: one slow handshake among local ones moves it nowhere. Most
  // flows must be far too: the median of an even count is the mean of the middle two, which
  // a client slow on its own in half its handshakes carries over the budget. (2) The
  // last min_flows flows each far (the research's "excess over >= 3 sessions"): a TLS 1.3
  // connection answers one turnaround, and a far operator's few connections through a
  // tunnel (whose close_notify waits for the whole download) may not reach min_samples.
  // (3) The far flows as a group of their own: a laptop also browses for itself, and its
  // own flows (hidden legs of a few ms) may outnumber the operator's and drown the median.
  // The group decides when it holds min_samples turnarounds, agrees with itself (the
  // largest at most twice the least: one operator's round trip, not scattered stalls), and
  // no flow of the window lies in the band from half the budget up to it (a near relay
  // whose jitter straddles the budget fills that band; a laptop's own flows stay under it).
  //
  // A flow whose answered flights all came spread out gives only a lower bound b
  // (relay::ReadTurnaround): its leg lies from b up to about 2b. Under half the budget it
  // is near all the same, at or over the budget far; in between it could be either (a far
  // relay that forwards at once reads half its round trip), so it counts toward nothing.
  const auto undecided = [budget_ms](const HostState::HiddenSample& s) {
    return s.lower_bound && s.hidden_ms >= budget_ms / 2 && s.hidden_ms < budget_ms;
  };
  std::uint64_t total = 0;
  std::vector<double> values;
  std::vector<double> far;
  std::uint64_t far_turnarounds = 0;
  bool straddles = false;
  for (const HostState::HiddenSample& s : state.hidden) {
    if (undecided(s))
      continue;
    total += s.samples_ms.size();
    values.push_back(s.hidden_ms);
    if (s.hidden_ms >= budget_ms) {
      far.push_back(s.hidden_ms);
      far_turnarounds += s.samples_ms.size();
    } else if (s.hidden_ms >= budget_ms / 2) {
      straddles = true;
    }
  }
  const std::size_t n = values.size();
  if (n == 0)
    return;
  std::vector<double> last(values.end() - std::min<std::size_t>(n, config_.relay.min_flows),
                           values.end());
  const double median = *detectors::relay::Median(values);  // reorders values
  std::string rule;
  double decided_ms = 0;
  std::size_t decided_flows = 0;
  if (total >= config_.relay.min_samples && median >= budget_ms && 2 * far.size() > n) {
    rule = "median_over_window";
    decided_ms = median;
    decided_flows = n;
  } else if (n >= config_.relay.min_flows &&
             *std::min_element(last.begin(), last.end()) >= budget_ms) {
    rule = "consecutive_flows";
    decided_ms = *detectors::relay::Median(last);
    decided_flows = last.size();
  } else if (!straddles && far_turnarounds >= config_.relay.min_samples &&
             *std::max_element(far.begin(), far.end()) <=
                 2 * *std::min_element(far.begin(), far.end())) {
    rule = "far_flows";
    decided_ms = *detectors::relay::Median(far);
    decided_flows = far.size();
  } else {
    return;
  }
  if (const std::optional<double> ratio = OpeningRatio(state.hidden, budget_ms);
      ratio && config_.relay.hidden_leg_max_opening_ratio > 0 &&
      *ratio > config_.relay.hidden_leg_max_opening_ratio) {
    r["hidden_leg_withheld"] = "slow_opening";
    r["opening_wait_ratio"] = Round3(*ratio);
    absl::MutexLock lock(&mu_);
    ++stats_.hidden_leg_slow_openings;
    return;
  }
  if (!Admit(host, absl::StrCat(kSidHiddenLeg), finding.ts))
    return;
  // The flows that decided first (the far ones, for the far-flows rule), newest first.
  nlohmann::json flows = nlohmann::json::array();
  std::set<std::string> apps;  // sorted, once each
  // One application talking to one server is also what a client slow on its own looks like
  // (a VPN client, a smartcard): the count tells the analyst which case to check first.
  std::set<std::string> servers;
  std::size_t bounds = 0;
  const bool far_only = rule == "far_flows";
  for (auto s = state.hidden.rbegin(); s != state.hidden.rend(); ++s) {
    if ((far_only && s->hidden_ms < budget_ms) || undecided(*s))
      continue;
    if (flows.size() < 8) {
      nlohmann::json flow = {{"flow_id", s->flow_id},
                             {"app", s->app},
                             {"dest_ip", s->server},
                             {"dest_port", s->server_port},
                             {"hidden_leg_rtt_ms", s->hidden_ms}};
      if (s->lower_bound)
        flow["hidden_leg_lower_bound"] = true;
      if (s->by_connect_wait)
        flow["hidden_leg_by_connect_wait"] = true;
      flows.push_back(std::move(flow));
    }
    bounds += s->lower_bound ? 1 : 0;
    apps.insert(s->app);
    servers.insert(s->server);
  }
  Event alert = NewAlert(finding.ts, finding.flow, host, kSidHiddenLeg,
                         absl::StrCat("RELAYWATCH host answers from farther than it is: hidden "
                                      "leg of ",
                                      Round1(decided_ms), " ms round trip"),
                         "Relay", 2, "hidden_leg");
  const Site* site = SiteOf(host);
  alert.evidence = {{"method", "hidden_leg"},
                    {"apps", apps},
                    {"hidden_leg_rtt_ms", Round1(decided_ms)},
                    {"min_distance_km", std::round(FibreKm(decided_ms))},
                    {"rule", rule},
                    {"flows_decided", decided_flows},
                    {"flows_in_window", state.hidden.size()},
                    {"flows_lower_bound", bounds},
                    {"turnarounds", total},
                    {"servers", servers.size()},
                    {"local_rtt_ms", budget_ms},
                    {"site", site ? site->name : ""},
                    {"location", site ? site->location : ""},
                    {"recent_flows", flows}};
  PublishAlert(std::move(alert), publish);
}

void HostStage::RoutedRelay(const Event& finding, const IpAddress& host, bool originated,
                            std::vector<Event>& publish) {
  // Only a flow whose handshake the sensor saw: it fixes who opened it, and the TTL of the
  // host's own SYN (or SYN/ACK) tells its packets from those it forwards.
  const nlohmann::json& r = finding.body;
  if (!r.contains("handshake") || !r["handshake"].is_object())
    return;
  const nlohmann::json& hs = r["handshake"];
  const char* ttl_key = originated ? "originator_ttl" : "responder_ttl";
  if (!hs.contains(ttl_key) || !hs[ttl_key].is_number_integer())
    return;
  const std::int64_t ttl = hs[ttl_key].get<std::int64_t>();
  const std::optional<double> rtt =
      Number(r, originated ? "rtt_originator_ms" : "rtt_responder_ms");
  if (!rtt || ttl <= 0 || ttl > 255)
    return;
  HostState& state = Host(host, finding.ts);
  const absl::Duration window = config_.relay.window;
  const HostState::Leg leg{finding.ts,
                           *rtt,
                           static_cast<std::uint8_t>(ttl),
                           finding.flow->flow_id,
                           r.value("app", ""),
                           (originated ? finding.flow->dest_ip : finding.flow->src_ip).ToString()};
  // Sliding minimum of the host's round trip over the window.
  std::deque<HostState::Leg>& own = state.own_legs;
  while (!own.empty() && own.back().rtt_ms >= leg.rtt_ms)
    own.pop_back();
  MakeRoom(own, finding.ts, window);
  own.push_back(leg);
  const double budget = detectors::relay::ToMs(LocalRtt(host));
  std::deque<HostState::Leg>& far = state.far_legs;
  MakeRoom(far, finding.ts, window);
  // A round trip under the budget cannot be a budget beyond the host's own.
  if (originated && leg.rtt_ms >= budget)
    far.push_back(leg);
  if (far.empty())
    return;
  // Forwarded: beyond the host's own round trip by the budget, in packets whose TTL is not
  // the host's own (a router decrements it; a slow link or a queue does not change it).
  const HostState::Leg& near = own.front();
  std::vector<const HostState::Leg*> routed;
  std::vector<double> rtts;
  for (const HostState::Leg& l : far) {
    if (l.rtt_ms - near.rtt_ms >= budget && l.ttl != near.ttl) {
      routed.push_back(&l);
      rtts.push_back(l.rtt_ms);
    }
  }
  if (routed.size() < config_.relay.min_samples)
    return;
  if (!Admit(host, absl::StrCat(kSidRoutedRelay), finding.ts))
    return;
  const double median = *detectors::relay::Median(rtts);
  const double hidden = median - near.rtt_ms;
  nlohmann::json flows = nlohmann::json::array();
  std::set<std::string> apps;  // sorted, once each
  std::set<int> ttls;
  for (auto l = routed.rbegin(); l != routed.rend(); ++l) {
    if (flows.size() < 8) {
      flows.push_back({{"flow_id", (*l)->flow_id},
                       {"app", (*l)->app},
                       {"dest_ip", (*l)->peer},
                       {"rtt_originator_ms", (*l)->rtt_ms},
                       {"ttl", (*l)->ttl}});
    }
    apps.insert((*l)->app);
    ttls.insert((*l)->ttl);
  }
  Event alert =
      NewAlert(finding.ts, finding.flow, host, kSidRoutedRelay,
               absl::StrCat("RELAYWATCH host forwards connections for a far device: they end ",
                            Round1(hidden), " ms round trip beyond the host"),
               "Relay", 2, "routed_relay");
  const Site* site = SiteOf(host);
  alert.evidence = {{"method", "routed_relay"},
                    {"apps", apps},
                    {"hidden_leg_rtt_ms", Round1(hidden)},
                    {"min_distance_km", std::round(FibreKm(hidden))},
                    {"rtt_host_ms", near.rtt_ms},
                    {"ttl_host", near.ttl},
                    {"host_flow_id", near.flow_id},
                    {"rtt_forwarded_ms", Round1(median)},
                    {"ttls_forwarded", ttls},
                    {"flows_forwarded", routed.size()},
                    {"local_rtt_ms", budget},
                    {"site", site ? site->name : ""},
                    {"location", site ? site->location : ""},
                    {"recent_flows", flows}};
  PublishAlert(std::move(alert), publish);
}

struct HostStage::StoneMatch {
  detectors::relay::SteppingStone stone;
  absl::Duration window;
  absl::Duration offset = absl::ZeroDuration();  // packets only
  bool of_packets = false;
  bool of_outputs = false;
  bool of_bursts = false;
  bool of_shown = false;
};

std::optional<HostStage::StoneMatch> HostStage::MatchStone(const HostState::OnFlow& in,
                                                           const HostState::OnFlow& out,
                                                           absl::Duration leg, double max_p) const {
  const detectors::relay::RelayConfig& c = config_.relay;
  const std::uint64_t min_ons = c.stepping_stone_min_ons;
  const std::uint64_t min_bursts = detectors::relay::MinBurstStarts(min_ons);
  // ON periods, of the input or of the output, match by one rule.
  const auto ons_match = [&](const detectors::relay::SteppingStone& s) {
    return s.ratio >= c.stepping_stone_ratio && s.correlated >= min_ons / 2 && s.chance <= max_p;
  };
  StoneMatch m;
  if (in.ons.size() >= min_ons && out.ons.size() >= min_ons) {
    m.window = c.stepping_stone_delta + leg;
    m.stone = detectors::relay::CorrelateOnTimes(in.ons, out.ons, m.window);
    if (ons_match(m.stone))
      return m;
  }
  // Packets where ON periods are too few (OpenSSH's chaff fills the pauses) or have not
  // matched yet. A relay forwards nearly every packet; a host's independent sessions match
  // only by coincidence (CorrelatePackets).
  if (!in.packets.empty() && !out.packets.empty()) {
    // Widened and moved by the host's leg (ScanPacketWindows): as for ON periods, a relayed
    // packet leaves one round trip of the host's link after it came in.
    const std::optional<detectors::relay::PacketWindowMatch> p =
        detectors::relay::ScanPacketWindows(in.packets, out.packets, c.stepping_stone_packet_delta,
                                            leg, kMinForwardedShare,
                                            detectors::relay::PacketSample::kMinPackets);
    if (p && p->stone.chance <= max_p && p->stone.gap_chance <= max_p) {
      m.stone = p->stone;
      m.window = p->width;
      m.offset = p->offset;
      m.of_packets = true;
      return m;
    }
  }
  // Output the other way: what the outbound flow's server sends, the host forwards to the
  // controller at once. A client that re-times every key on its own clock (OpenSSH >= 9.5
  // on the host, ssh onward from its shell) breaks the input's match, not this one; the
  // answers to its chaff, which fill every pause, are not output. Forwarded within the
  // packets' window (no person or screen between), not the ON periods' 80 ms: two sessions
  // refreshing on one period (`top`, `watch`) lock their phase within it 16 times less often.
  if (in.output_ons.size() >= min_ons && out.output_ons.size() >= min_ons &&
      c.stepping_stone_packet_delta > absl::ZeroDuration()) {
    m.window = c.stepping_stone_packet_delta + leg;
    // A host that coalesces what it forwards (sshd on a channel without a terminal: `ssh
    // -J`) holds the output until the controller acknowledges its last segment.
    if (in.coalesced)
      m.window += absl::Milliseconds(in.far_leg_ms);
    m.stone = detectors::relay::CorrelateOnTimes(out.output_ons, in.output_ons, m.window);
    if (ons_match(m.stone)) {
      m.of_outputs = true;
      return m;
    }
  }
  // Burst starts: where the host's client re-times every key and chaffs while a person types
  // (OpenSSH >= 9.5: `vnc_typed_ssh`, a far person typing through a screen into the host's
  // own ssh), its pauses are filled up to 1-3 s past each key and neither the input's ON
  // periods nor its packets match. The key that ends a longer pause is sent at once, as the
  // person's input came in through the remote desktop; the inbound ON period it follows
  // is the same pause's end. Within the ON periods' window: through a screen, a terminal
  // and the client, not a forward. Few but rare on both sides, so `chance` decides.
  if (out.burst_starts.size() >= min_bursts && in.ons.size() >= min_ons) {
    m.window = c.stepping_stone_delta + leg;
    m.stone = detectors::relay::CorrelateOnTimes(in.ons, out.burst_starts, m.window);
    if (ons_match(m.stone)) {
      m.of_bursts = true;
      return m;
    }
  }
  // Output shown on a screen: the same session seen the other way. What the host's SSH
  // server sends (a command's output, the prompt after it) the host draws, and its remote
  // desktop sends the person as a screen update; OpenSSH's chaff re-times the keys, not the
  // server's output. Within the ON periods' window: a screen is drawn and encoded (10-40 ms
  // with xrdp), no forward. Few but rare, so `chance` decides; a busy screen matches
  // everything and decides nothing.
  if (out.output_ons.size() >= min_bursts && in.updates.size() >= min_bursts) {
    m.window = c.stepping_stone_delta + leg;
    m.stone = detectors::relay::CorrelateShownOutput(out.output_ons, in.updates, m.window);
    if (ons_match(m.stone)) {
      m.of_shown = true;
      return m;
    }
  }
  return std::nullopt;
}

void HostStage::PublishStone(const Event& finding, const IpAddress& host, const IpAddress& in_host,
                             const IpAddress& controller, std::uint64_t in_flow,
                             std::uint64_t out_flow, const StoneMatch& m, double pairs,
                             std::vector<Event>& publish) {
  if (!Admit(host, absl::StrCat(kSidSteppingStone, "/", controller.ToString()), finding.ts))
    return;
  const detectors::relay::SteppingStone& s = m.stone;
  Event alert = NewAlert(finding.ts, finding.flow, host, kSidSteppingStone,
                         "RELAYWATCH input from outside relayed through an internal host "
                         "(stepping stone)",
                         "Relay", 2, "stepping_stone");
  const char* unit = m.of_outputs ? "output_ons" : m.of_packets ? "packets" : "ons";
  const char* in_unit = m.of_shown ? "screen_updates" : unit;
  const char* out_unit = m.of_shown ? "output_ons" : m.of_bursts ? "burst_starts" : unit;
  // Output is led by the outbound flow: the stone's leading stream is its.
  const std::size_t inbound_count = m.of_outputs ? s.outbound_ons : s.inbound_ons;
  const std::size_t outbound_count = m.of_outputs ? s.inbound_ons : s.outbound_ons;
  alert.evidence = {{"method", "stepping_stone"},
                    {"correlation", m.of_outputs   ? "output_on_periods"
                                    : m.of_packets ? "packets"
                                    : m.of_bursts  ? "burst_starts"
                                    : m.of_shown   ? "shown_output"
                                                   : "on_periods"},
                    {"host", host.ToString()},
                    {"controller", controller.ToString()},
                    {"inbound_flow_id", in_flow},
                    {"outbound_flow_id", out_flow},
                    {absl::StrCat("inbound_", in_unit), inbound_count},
                    {absl::StrCat("outbound_", out_unit), outbound_count},
                    {"correlated", s.correlated},
                    {"ratio", Round3(s.ratio)},
                    {"median_lag_ms", Round1(s.median_lag_ms)},
                    {"window_ms", Round1(absl::ToDoubleMilliseconds(m.window))},
                    {"chance", s.chance}};
  if (in_host != host) {
    alert.evidence["inbound_host"] = in_host.ToString();
    // The chance had to beat max_p / pairs.
    alert.evidence["pairs_tested"] = static_cast<std::uint64_t>(pairs);
  }
  if (m.of_packets) {
    alert.evidence["window_offset_ms"] = Round1(absl::ToDoubleMilliseconds(m.offset));
    alert.evidence["gap_pairs"] = s.gap_pairs;
    alert.evidence["gap_rho"] = Round3(s.gap_rho);
    alert.evidence["gap_chance"] = s.gap_chance;
  }
  PublishAlert(std::move(alert), publish);
}

void HostStage::SteppingStones(const Event& finding, const IpAddress& host, bool inbound,
                               const IpAddress& peer, OnPeriods periods, bool ssh,
                               std::vector<Event>& publish) {
  const detectors::relay::RelayConfig& c = config_.relay;
  const std::uint64_t min_ons = c.stepping_stone_min_ons;
  HostState::OnFlow self{.flow_id = finding.flow->flow_id,
                         .inbound = inbound,
                         .peer = peer,
                         .ons = std::move(periods.ons),
                         .host_leg_ms = periods.legs[inbound ? 1 : 0].value_or(0.0),
                         .far_leg_ms = inbound ? periods.legs[0].value_or(0.0) : 0.0,
                         .coalesced = inbound && periods.coalesced,
                         .packets = std::move(periods.packets),
                         .output_ons = std::move(periods.output_ons),
                         .burst_starts = std::move(periods.burst_starts),
                         .updates = std::move(periods.updates),
                         .first = absl::InfiniteFuture(),
                         .last = absl::InfinitePast()};
  const bool by_ons = self.ons.size() >= min_ons;
  const bool packet_test = c.stepping_stone_packet_delta > absl::ZeroDuration();
  const bool by_packets =
      packet_test && self.packets.size() >= detectors::relay::PacketSample::kMinPackets;
  const bool by_outputs = packet_test && self.output_ons.size() >= min_ons;
  const std::uint64_t min_bursts = detectors::relay::MinBurstStarts(min_ons);
  // Only an outbound flow's client re-times the keys it sends.
  const bool by_bursts = !inbound && self.burst_starts.size() >= min_bursts;
  // Output shown on a screen: an outbound flow's output, an inbound remote desktop's updates.
  const bool by_shown_output = !inbound && self.output_ons.size() >= min_bursts;
  const bool by_updates = inbound && self.updates.size() >= min_bursts;
  if (!by_ons && !by_packets && !by_outputs && !by_bursts && !by_shown_output && !by_updates)
    return;
  // A test a side cannot take is empty on that side (MatchStone reads emptiness so).
  if (!by_ons)
    self.ons.clear();
  if (!by_packets)
    self.packets.clear();
  if (!by_outputs && !by_shown_output)
    self.output_ons.clear();
  if (!by_bursts)
    self.burst_starts.clear();
  if (!by_updates)
    self.updates.clear();
  for (const std::vector<PacketTime>* times :
       {&self.ons, &self.packets, &self.output_ons, &self.burst_starts, &self.updates}) {
    if (times->empty())
      continue;
    self.first = std::min(self.first, times->front());
    self.last = std::max(self.last, times->back());
  }
  HostState& state = Host(host, finding.ts);
  while (!state.on_flows.empty() && (state.on_flows.size() >= kMaxOnFlows ||
                                     finding.ts - state.on_flows.front().last > c.window)) {
    state.on_flows.pop_front();
  }
  for (const HostState::OnFlow& other : state.on_flows) {
    if (other.inbound == inbound)
      continue;
    const IpAddress& controller = inbound ? peer : other.peer;
    // A hop used from inside (an admin's jump host) is ordinary; from outside it is a relay.
    if (IsHome(controller))
      continue;
    // A relayed key leaves the host one round trip of the host's own link after the sensor
    // saw it arrive: nothing on a wire, tens to hundreds of ms behind a queued Wi-Fi. The
    // window grows by the larger of the two flows' legs; `chance` counts the wider windows.
    const absl::Duration leg = absl::Milliseconds(std::max(self.host_leg_ms, other.host_leg_ms));
    const std::optional<StoneMatch> m =
        MatchStone(inbound ? self : other, inbound ? other : self, leg, c.stepping_stone_max_p);
    if (m) {
      PublishStone(finding, host, host, controller, inbound ? self.flow_id : other.flow_id,
                   inbound ? other.flow_id : self.flow_id, *m, 1, publish);
    }
  }
  if (c.stepping_stone_across_hosts)
    SteppingStonesAcrossHosts(finding, host, self, ssh, publish);
  state.on_flows.push_back(std::move(self));
}

void HostStage::SteppingStonesAcrossHosts(const Event& finding, const IpAddress& host,
                                          const HostState::OnFlow& self, bool ssh,
                                          std::vector<Event>& publish) {
  const detectors::relay::RelayConfig& c = config_.relay;
  // The hop's side is a session from outside; the laptop's an SSH flow, whose keys a device
  // beside it (an IP-KVM's keyboard, a second machine's screen) types. Browsing and other
  // flows are left out: they carry no person's keys, and every one more to test is one more
  // chance of a coincidence.
  const bool keep = self.inbound ? !IsHome(self.peer) : ssh;
  if (!keep)
    return;
  std::deque<CrossHostFlow>& same = self.inbound ? cross_host_in_ : cross_host_out_;
  std::deque<CrossHostFlow>& other_way = self.inbound ? cross_host_out_ : cross_host_in_;
  for (std::deque<CrossHostFlow>* kept : {&same, &other_way}) {
    while (!kept->empty() && finding.ts - kept->front().flow.last > c.window)
      kept->pop_front();
  }
  const Site* site_of_host = SiteOf(host);
  const std::string site = site_of_host ? site_of_host->name : "";
  std::size_t own = 0;  // this host's kept flows of this direction
  for (const CrossHostFlow& other : same)
    own += other.host == host;
  // This flow's candidates: the site's flows of the other direction on other hosts whose times
  // overlap this flow's (a kept window of an hour ago cannot match; most of a large site's
  // kept flows are such, and each pairing costs tens of microseconds).
  std::vector<const CrossHostFlow*> candidates;
  for (const CrossHostFlow& other : other_way) {
    const absl::Duration slack = kCrossHostOverlapSlack + c.stepping_stone_delta +
                                 absl::Milliseconds(self.host_leg_ms + other.flow.host_leg_ms);
    if (other.site == site && other.host != host && other.flow.last + slack >= self.first &&
        other.flow.first <= self.last + slack)
      candidates.push_back(&other);
  }
  // Every pair of the site's kept flows that overlap is one more chance of a coincidence
  // (Bonferroni): an inbound session is tried against each laptop's SSH flows of its time in
  // turn, so the family is all of them, not the few this flow meets now. Pairs that never
  // overlap are never tried (a long session's older windows, a laptop's session of an hour
  // ago), so they are not counted; pairs are counted with the widest slack any pair gets and
  // with each host's own, so never fewer than are tried. Counted only when there is a
  // candidate: a server's many sessions from outside usually meet none.
  double tests = 1;
  if (!candidates.empty()) {
    std::vector<std::pair<PacketTime, PacketTime>> spans[2];  // [0] inbound, [1] outbound
    double widest_leg_ms = self.host_leg_ms;
    for (const std::deque<CrossHostFlow>* kept : {&cross_host_in_, &cross_host_out_}) {
      for (const CrossHostFlow& other : *kept) {
        if (other.site != site)
          continue;
        spans[kept == &cross_host_in_ ? 0 : 1].emplace_back(other.flow.first, other.flow.last);
        widest_leg_ms = std::max(widest_leg_ms, other.flow.host_leg_ms);
      }
    }
    spans[self.inbound ? 0 : 1].emplace_back(self.first, self.last);
    tests = std::max(1.0, OverlappingPairs(spans[0], spans[1],
                                           kCrossHostOverlapSlack + c.stepping_stone_delta +
                                               absl::Milliseconds(2 * widest_leg_ms)));
  }
  for (const CrossHostFlow* other : candidates) {
    const HostState::OnFlow& in = self.inbound ? self : other->flow;
    const HostState::OnFlow& out = self.inbound ? other->flow : self;
    const IpAddress& in_host = self.inbound ? host : other->host;
    const IpAddress& out_host = self.inbound ? other->host : host;
    // The key crosses the hop's link and then the laptop's: both legs widen the window.
    const absl::Duration leg = absl::Milliseconds(in.host_leg_ms + out.host_leg_ms);
    const std::optional<StoneMatch> m = MatchStone(in, out, leg, c.stepping_stone_max_p / tests);
    if (m)
      PublishStone(finding, out_host, in_host, in.peer, in.flow_id, out.flow_id, *m, tests,
                   publish);
  }
  // A host that serves the internet (its clients' sessions) or runs many SSH sessions keeps
  // only its latest few, so that it cannot push a device's session out of the table.
  std::uint64_t evicted = 0;
  if (own >= kMaxCrossHostFlowsPerHost) {
    same.erase(std::find_if(same.begin(), same.end(),
                            [&](const CrossHostFlow& other) { return other.host == host; }));
    ++evicted;
  }
  if (same.size() >= (self.inbound ? kMaxCrossHostInbound : kMaxCrossHostOutbound)) {
    same.pop_front();
    ++evicted;
  }
  same.push_back({host, site, self});
  absl::MutexLock lock(&mu_);
  stats_.cross_host_flows_evicted += evicted;
  stats_.cross_host_flows = cross_host_in_.size() + cross_host_out_.size();
}

std::string HostStage::PersonOf(const IpAddress& host) const {
  const detectors::context::Context* context = config_.context.get();
  if (context == nullptr || context->inventory.empty())
    return "";
  const detectors::context::Asset* asset = context->inventory.FindByAddress(host);
  return asset != nullptr ? asset->person : "";
}

void HostStage::Typing(const Event& finding, const IpAddress& host, std::vector<double> reactions,
                       std::vector<Event>& publish) {
  const detectors::relay::RelayConfig& c = config_.relay;
  const std::string person = PersonOf(host);
  auto it = typing_profiles_.find(host);
  if (it == typing_profiles_.end()) {
    if (typing_profiles_.size() >= config_.max_hosts) {
      typing_profiles_.erase(Oldest(typing_profiles_, [](const TypingProfile& p) {
        return p.last_seen;
      }));
      absl::MutexLock lock(&mu_);
      ++stats_.typing_profiles_evicted;
    }
    it = typing_profiles_.emplace(host, TypingProfile{}).first;
    it->second.person = person;
  }
  TypingProfile& p = it->second;
  if (p.person != person) {
    p = TypingProfile{};  // another person's laptop now: their own history starts
    p.person = person;
  }
  p.last_seen = finding.ts;
  {
    absl::MutexLock lock(&mu_);
    stats_.typing_profiles = typing_profiles_.size();
  }
  const std::size_t half = std::max<std::size_t>(1, c.typing_window_samples / 2);
  const std::vector<std::size_t> windows = TypingWindows(c);
  for (double d : reactions) {
    if (p.baseline.size() < c.typing_baseline_samples) {
      p.baseline.push_back(d);
      continue;
    }
    p.recent.push_back(d);
    if (p.recent.size() > windows.back()) {
      // The oldest reaction leaves the longest window for the history, so the history follows
      // a person who slowly changes and never overlaps a window it is compared with. Not while
      // the windows say far: a relay's reactions are learned only if it never showed. Aging
      // every other reaction alike keeps the history unbiased (renewing it only after windows
      // that looked near kept histories that were low by chance, and they drifted).
      if (!p.far) {
        p.baseline.push_back(p.recent.front());
        p.baseline.pop_front();
      }
      p.recent.pop_front();
    }
    ++p.fresh;
    if (p.recent.size() < c.typing_window_samples || p.fresh < half)
      continue;
    // A full window with half of it new: judge it, and the longer windows the recent
    // reactions fill. A person's thinking varies by seconds, so a 40 ms relay (about 100 ms
    // more here) hides in one window and shows only over hundreds of reactions.
    p.fresh = 0;
    const std::vector<double> base(p.baseline.begin(), p.baseline.end());
    std::size_t judged = 0;
    for (std::size_t n : windows)
      judged += p.recent.size() >= n;
    // Each window is a test of its own: Bonferroni keeps the chance of a false alert per
    // judgement at typing_max_p. Enough splits that the threshold is reachable with room.
    const double max_p = c.typing_max_p / static_cast<double>(judged);
    const int permutations =
        static_cast<int>(std::clamp(std::ceil(2.0 / max_p) - 1.0, 999.0, 59999.0));
    const double budget = detectors::relay::ToMs(LocalRtt(host));
    detectors::relay::ReactionShift shift;  // the longest window's, or the one that decided
    std::size_t window = 0;
    bool far = false;
    bool near = true;
    for (std::size_t n : windows) {
      if (p.recent.size() < n)
        break;
      const std::vector<double> recent(p.recent.end() - static_cast<std::ptrdiff_t>(n),
                                       p.recent.end());
      const detectors::relay::ReactionShift r = detectors::relay::CompareReactions(
          base, recent, permutations, std::hash<std::string>{}(host.ToString()) + n);
      shift = r;
      window = n;
      near = near && r.shift_ms < budget / 2;
      if (r.shift_ms >= budget && r.p_value <= max_p) {
        far = true;
        break;
      }
    }
    p.far = far;
    // Every judged window is a `typing` record (an output lists it to follow a person's
    // numbers over time); the alert carries the same numbers.
    const Site* site = SiteOf(host);
    Event record;
    record.event_type = "typing";
    record.ts = finding.ts;
    record.flow = finding.flow;
    record.host_ip = host;
    record.body = {{"reaction_shift_ms", Round1(shift.shift_ms)},
                   {"min_distance_km", std::round(FibreKm(std::max(0.0, shift.shift_ms)))},
                   {"p_value", std::round(shift.p_value * 10000.0) / 10000.0},
                   {"verdict", far ? "far" : near ? "near" : "undecided"},
                   {"baseline_samples", base.size()},
                   {"window_samples", window},
                   {"baseline_p10_ms", Round1(shift.baseline_p10_ms)},
                   {"baseline_p50_ms", Round1(shift.baseline_p50_ms)},
                   {"recent_p10_ms", Round1(shift.recent_p10_ms)},
                   {"recent_p50_ms", Round1(shift.recent_p50_ms)},
                   {"local_rtt_ms", budget},
                   {"site", site ? site->name : ""}};
    if (!p.person.empty())
      record.body["person"] = p.person;
    publish.push_back(record);
    if (!far || !Admit(host, absl::StrCat(kSidTypingShift), finding.ts))
      continue;
    Event alert = NewAlert(
        finding.ts, finding.flow, host, kSidTypingShift,
        absl::StrCat("RELAYWATCH person reacts to the screen later than their own history "
                     "(+", Round1(shift.shift_ms), " ms): screen seen through a far relay"),
        "Relay", 3, "keystrokes");
    alert.evidence = record.body;
    alert.evidence["method"] = "keystrokes";
    alert.evidence["host"] = host.ToString();
    alert.evidence["location"] = site ? site->location : "";
    PublishAlert(std::move(alert), publish);
  }
}

nlohmann::json HostStage::SaveTypingProfiles() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [host, p] : typing_profiles_) {
    out[host.ToString()] = {{"person", p.person},
                            {"baseline_ms", p.baseline},
                            {"recent_ms", p.recent},
                            {"fresh", p.fresh},
                            {"far", p.far},
                            {"last_seen_us", absl::ToUnixMicros(p.last_seen)}};
  }
  return out;
}

absl::Status HostStage::LoadTypingProfiles(const nlohmann::json& profiles,
                                           const std::string& path) {
  if (!profiles.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": typing_profiles is not an object"));
  }
  auto delays = [](const nlohmann::json& p, const char* key, std::deque<double>& out) {
    if (!p.contains(key) || !p[key].is_array())
      return false;
    for (const nlohmann::json& d : p[key]) {
      if (!d.is_number())
        return false;
      out.push_back(d.get<double>());
    }
    return true;
  };
  const std::size_t longest_window = TypingWindows(config_.relay).back();
  for (const auto& [address, p] : profiles.items()) {
    const absl::StatusOr<IpAddress> host = IpAddress::Parse(address);
    TypingProfile t;
    if (!host.ok() || !p.is_object() || !p.contains("person") || !p["person"].is_string() ||
        !delays(p, "baseline_ms", t.baseline) || !delays(p, "recent_ms", t.recent)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": bad typing profile for \"", address, "\""));
    }
    t.person = p["person"].get<std::string>();
    if (p.contains("fresh") && p["fresh"].is_number_unsigned())
      t.fresh = p["fresh"].get<std::uint64_t>();
    if (p.contains("far") && p["far"].is_boolean())
      t.far = p["far"].get<bool>();
    if (p.contains("last_seen_us") && p["last_seen_us"].is_number_integer())
      t.last_seen = absl::FromUnixMicros(p["last_seen_us"].get<std::int64_t>());
    // A smaller configured window or baseline keeps the newest delays.
    while (t.baseline.size() > config_.relay.typing_baseline_samples)
      t.baseline.pop_front();
    while (t.recent.size() > longest_window)
      t.recent.pop_front();
    t.fresh = std::min<std::uint64_t>(t.fresh, t.recent.size());
    if (typing_profiles_.size() >= config_.max_hosts || t.person != PersonOf(*host))
      continue;  // no room, or another person's laptop now: start afresh
    typing_profiles_.insert_or_assign(*host, std::move(t));
  }
  absl::MutexLock lock(&mu_);
  stats_.typing_profiles = typing_profiles_.size();
  return absl::OkStatus();
}

}  // namespace relaywatch::host
