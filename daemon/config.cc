#include "daemon/config.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "capture/base/status_macros.h"
#include "capture/pcap_source.h"
#include "detectors/detector.h"
#include "detectors/relay/config.h"
#include "detectors/remote_access/config.h"
#include "detectors/stack/stack.h"

namespace relaywatch::daemon {
namespace {

const std::vector<std::string> kDefaultHomeNetworks = {"10.0.0.0/8", "172.16.0.0/12",
                                                       "192.168.0.0/16", "fc00::/7"};

absl::Status ParseCapture(const config::Section& s, CaptureConfig& c) {
  RW_RETURN_IF_ERROR(s.CheckKeys(
      {"interfaces", "bpf", "snaplen", "buffer_size_mib", "promiscuous", "workers"}));
  RW_ASSIGN_OR_RETURN(c.interfaces, s.StringList("interfaces", c.interfaces));
  RW_ASSIGN_OR_RETURN(c.bpf, s.String("bpf", c.bpf));
  RW_ASSIGN_OR_RETURN(std::uint64_t snaplen, s.Uint("snaplen", c.snaplen, 64, 262144));
  RW_ASSIGN_OR_RETURN(std::uint64_t buffer, s.Uint("buffer_size_mib", c.buffer_size_mib, 1, 4096));
  RW_ASSIGN_OR_RETURN(c.promiscuous, s.Bool("promiscuous", c.promiscuous));
  RW_ASSIGN_OR_RETURN(std::uint64_t workers, s.Uint("workers", c.workers, 0, 64));
  c.snaplen = static_cast<int>(snaplen);
  c.buffer_size_mib = static_cast<int>(buffer);
  c.workers = static_cast<int>(workers);
  if (absl::Status bpf = capture::CheckBpf(c.bpf, 1, c.snaplen); !bpf.ok()) {
    return s.Error(s.At("bpf"), "bpf", bpf.message());
  }
  return absl::OkStatus();
}

absl::Status ParseFlows(const config::Section& s, Config& c) {
  RW_RETURN_IF_ERROR(s.CheckKeys({"max_flows", "tcp_idle_timeout", "udp_idle_timeout",
                                  "closed_timeout", "duplicate_window", "community_id_seed"}));
  RW_ASSIGN_OR_RETURN(c.flows.max_flows, s.Uint("max_flows", c.flows.max_flows, 1024, 1 << 26));
  RW_ASSIGN_OR_RETURN(c.flows.tcp_idle_timeout,
                      s.Duration("tcp_idle_timeout", c.flows.tcp_idle_timeout, absl::Seconds(1),
                                 absl::Hours(24)));
  RW_ASSIGN_OR_RETURN(c.flows.udp_idle_timeout,
                      s.Duration("udp_idle_timeout", c.flows.udp_idle_timeout, absl::Seconds(1),
                                 absl::Hours(24)));
  RW_ASSIGN_OR_RETURN(c.flows.closed_timeout,
                      s.Duration("closed_timeout", c.flows.closed_timeout, absl::Seconds(0),
                                 absl::Hours(1)));
  RW_ASSIGN_OR_RETURN(c.flows.duplicate_window,
                      s.Duration("duplicate_window", c.flows.duplicate_window, absl::ZeroDuration(),
                                 absl::Seconds(1)));
  RW_ASSIGN_OR_RETURN(std::uint64_t seed, s.Uint("community_id_seed", 0, 0, 65535));
  c.community_id_seed = static_cast<std::uint16_t>(seed);
  return absl::OkStatus();
}

absl::Status CheckEventTypes(const config::Section& s, const std::vector<std::string>& events) {
  for (const std::string& e : events) {
    const auto& known = KnownEventTypes();
    if (std::find(known.begin(), known.end(), e) == known.end()) {
      return s.Error(s.At("events"), "events",
                     absl::StrCat("unknown event type \"", e, "\"; known: ",
                                  absl::StrJoin(known, ", ")));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseOutputs(const config::Section& s, Config& c) {
  RW_RETURN_IF_ERROR(s.CheckKeys({"jsonl", "syslog", "prometheus"}));
  const config::Section jsonl = s.Child("jsonl");
  RW_RETURN_IF_ERROR(jsonl.CheckKeys({"enabled", "path", "events"}));
  RW_ASSIGN_OR_RETURN(c.jsonl_enabled, jsonl.Bool("enabled", c.jsonl_enabled));
  RW_ASSIGN_OR_RETURN(c.jsonl.path, jsonl.String("path", c.jsonl.path));
  RW_ASSIGN_OR_RETURN(c.jsonl.events, jsonl.StringList("events", c.jsonl.events));
  RW_RETURN_IF_ERROR(CheckEventTypes(jsonl, c.jsonl.events));

  const config::Section syslog = s.Child("syslog");
  RW_RETURN_IF_ERROR(syslog.CheckKeys(
      {"enabled", "transport", "address", "facility", "app_name", "enterprise_id", "events"}));
  // Naming a syslog receiver turns the output on unless `enabled: false` says otherwise.
  RW_ASSIGN_OR_RETURN(c.syslog_enabled, syslog.Bool("enabled", syslog.Has("address")));
  RW_ASSIGN_OR_RETURN(c.syslog.transport,
                      syslog.Enum("transport", c.syslog.transport, {"udp", "tcp"}));
  RW_ASSIGN_OR_RETURN(c.syslog.address, syslog.String("address", c.syslog.address));
  RW_ASSIGN_OR_RETURN(c.syslog.facility, syslog.String("facility", c.syslog.facility));
  RW_ASSIGN_OR_RETURN(c.syslog.app_name, syslog.String("app_name", c.syslog.app_name));
  RW_ASSIGN_OR_RETURN(std::uint64_t pen,
                      syslog.Uint("enterprise_id", c.syslog.enterprise_id, 1, 4294967295ULL));
  c.syslog.enterprise_id = static_cast<std::uint32_t>(pen);
  RW_ASSIGN_OR_RETURN(c.syslog.events, syslog.StringList("events", c.syslog.events));
  RW_RETURN_IF_ERROR(CheckEventTypes(syslog, c.syslog.events));
  if (absl::Status v = sinks::ValidateSyslogConfig(c.syslog); !v.ok()) {
    return syslog.Error(v.message());
  }

  const config::Section prom = s.Child("prometheus");
  RW_RETURN_IF_ERROR(prom.CheckKeys({"enabled", "listen"}));
  RW_ASSIGN_OR_RETURN(c.prometheus.enabled, prom.Bool("enabled", c.prometheus.enabled));
  RW_ASSIGN_OR_RETURN(c.prometheus.listen, prom.String("listen", c.prometheus.listen));
  if (c.prometheus.listen.rfind(':') == std::string::npos) {
    return prom.Error(prom.At("listen"), "listen", "expected ADDRESS:PORT");
  }
  return absl::OkStatus();
}

absl::Status ParseAlerting(const config::Section& s, host::HostStageConfig& a) {
  RW_RETURN_IF_ERROR(s.CheckKeys({"dedup_window", "max_alerts_per_host_per_hour", "max_hosts",
                                  "multi_tool_window", "allow"}));
  RW_ASSIGN_OR_RETURN(a.dedup_window, s.Duration("dedup_window", a.dedup_window, absl::ZeroDuration(),
                                                 absl::Hours(24 * 30)));
  RW_ASSIGN_OR_RETURN(a.max_alerts_per_host_per_hour,
                      s.Uint("max_alerts_per_host_per_hour", a.max_alerts_per_host_per_hour, 1,
                             1000000));
  RW_ASSIGN_OR_RETURN(a.max_hosts, s.Uint("max_hosts", a.max_hosts, 16, 1 << 24));
  RW_ASSIGN_OR_RETURN(a.multi_tool_window,
                      s.Duration("multi_tool_window", a.multi_tool_window, absl::Minutes(1),
                                 absl::Hours(24 * 90)));
  const YAML::Node allow = s.At("allow");
  if (allow.IsDefined() && !allow.IsNull()) {
    if (!allow.IsSequence()) {
      return s.Error(allow, "allow", "expected a list of {app, controller, host}");
    }
    for (std::size_t i = 0; i < allow.size(); ++i) {
      const config::Section rule_section(allow[i], absl::StrCat(s.path(), ".allow[", i, "]"),
                                         std::make_shared<const std::string>(s.file()));
      RW_RETURN_IF_ERROR(rule_section.CheckKeys({"app", "controller", "host"}));
      host::AllowRule rule;
      RW_ASSIGN_OR_RETURN(rule.app, rule_section.String("app", "*"));
      RW_ASSIGN_OR_RETURN(rule.controller, rule_section.CidrList("controller"));
      RW_ASSIGN_OR_RETURN(rule.host, rule_section.CidrList("host"));
      a.allow.push_back(std::move(rule));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseDetectors(const config::Section& s) {
  std::vector<std::string> names;
  for (const detectors::DetectorEntry& entry : detectors::Registry()) {
    names.emplace_back(entry.name);
  }
  RW_RETURN_IF_ERROR(s.CheckKeys(names));
  for (const detectors::DetectorEntry& entry : detectors::Registry()) {
    RW_RETURN_IF_ERROR(entry.create(s.Child(entry.name), detectors::DetectorContext{}).status());
  }
  return absl::OkStatus();
}

// scoring: the host risk score's weights, decay, threshold and state file.
absl::Status ParseScoring(const config::Section& s, host::ScoringConfig& c) {
  RW_RETURN_IF_ERROR(s.CheckKeys({"half_life", "alert_threshold", "weights", "default_weight",
                                  "state_file", "save_interval", "top_hosts"}));
  RW_ASSIGN_OR_RETURN(c.half_life, s.Duration("half_life", c.half_life, absl::Minutes(1),
                                               absl::Hours(24 * 365)));
  RW_ASSIGN_OR_RETURN(c.alert_threshold,
                      s.Double("alert_threshold", c.alert_threshold, 0.01, 1.0));
  RW_ASSIGN_OR_RETURN(c.default_weight, s.Double("default_weight", c.default_weight, 0.0, 1.0));
  const config::Section weights = s.Child("weights");
  const YAML::Node node = s.At("weights");
  if (node.IsDefined() && !node.IsNull()) {
    if (!node.IsMap()) {
      return s.Error(node, "weights", "expected a mapping of evidence kind to weight");
    }
    std::vector<std::string> kinds;
    for (const auto& kv : node) kinds.push_back(kv.first.as<std::string>());
    RW_RETURN_IF_ERROR(weights.CheckKeys(kinds));  // duplicates
    for (const std::string& kind : kinds) {
      RW_ASSIGN_OR_RETURN(c.weights[kind], weights.Double(kind, 0.0, 0.0, 1.0));
    }
  }
  RW_ASSIGN_OR_RETURN(c.state_file, s.String("state_file", c.state_file));
  RW_ASSIGN_OR_RETURN(c.save_interval, s.Duration("save_interval", c.save_interval,
                                                  absl::Seconds(10), absl::Hours(24)));
  RW_ASSIGN_OR_RETURN(const std::uint64_t top, s.Uint("top_hosts", c.top_hosts, 0, 1000));
  c.top_hosts = top;
  return absl::OkStatus();
}

// sites: where each monitored network is and what round trip counts as local there.
absl::Status ParseSites(const config::Section& root, host::HostStageConfig& a) {
  const YAML::Node sites = root.At("sites");
  if (!sites.IsDefined() || sites.IsNull()) {
    return absl::OkStatus();
  }
  if (!sites.IsSequence()) {
    return root.Error(sites, "sites", "expected a list of {name, networks, location, local_rtt}");
  }
  for (std::size_t i = 0; i < sites.size(); ++i) {
    const config::Section s(sites[i], absl::StrCat("sites[", i, "]"),
                            std::make_shared<const std::string>(root.file()));
    RW_RETURN_IF_ERROR(s.CheckKeys({"name", "networks", "location", "local_rtt"}));
    host::Site site;
    RW_ASSIGN_OR_RETURN(site.name, s.String("name", ""));
    if (site.name.empty()) {
      return s.Error(s.At("name"), "name", "a site needs a name");
    }
    RW_ASSIGN_OR_RETURN(site.networks, s.CidrList("networks"));
    if (site.networks.empty()) {
      return s.Error(s.At("networks"), "networks", "a site needs at least one network");
    }
    RW_ASSIGN_OR_RETURN(site.location, s.String("location", ""));
    RW_ASSIGN_OR_RETURN(site.local_rtt, s.Duration("local_rtt", a.relay.local_rtt,
                                                   absl::Milliseconds(1), absl::Seconds(5)));
    a.sites.push_back(std::move(site));
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& KnownEventTypes() {
  static const std::vector<std::string> kTypes = {"alert", "remote_session", "flow", "dns",
                                                  "tls",   "ssh",            "relay",
                                                  "tunnel", "shared_line", "typing"};
  return kTypes;
}

absl::StatusOr<Config> ParseConfig(const config::Section& root) {
  RW_RETURN_IF_ERROR(root.CheckKeys(
      {"home_networks", "entry_points", "sites", "scoring", "context", "capture", "flows", "outputs",
       "alerting", "detectors"}));
  Config c;
  c.source = root.file();
  RW_ASSIGN_OR_RETURN(c.home_networks_text,
                      root.StringList("home_networks", kDefaultHomeNetworks));
  for (const std::string& text : c.home_networks_text) {
    absl::StatusOr<Cidr> cidr = Cidr::Parse(text);
    if (!cidr.ok()) {
      return root.Error(root.At("home_networks"), "home_networks", cidr.status().message());
    }
    c.alerting.home_networks.push_back(*cidr);
  }
  RW_RETURN_IF_ERROR(ParseCapture(root.Child("capture"), c.capture));
  RW_RETURN_IF_ERROR(ParseFlows(root.Child("flows"), c));
  RW_RETURN_IF_ERROR(ParseOutputs(root.Child("outputs"), c));
  RW_RETURN_IF_ERROR(ParseAlerting(root.Child("alerting"), c.alerting));
  c.detectors = root.Child("detectors");
  RW_RETURN_IF_ERROR(ParseDetectors(c.detectors));
  // The host stage applies the tool signatures to TLS and DNS clues from every worker.
  RW_ASSIGN_OR_RETURN(detectors::remote_access::RemoteAccessConfig remote_access,
                      detectors::remote_access::ParseRemoteAccessConfig(
                          c.detectors.Child("remote_access")));
  c.alerting.signatures = remote_access.signatures;
  // The relay detector's host-level decisions (windows, budgets) are made by the host stage.
  RW_ASSIGN_OR_RETURN(c.alerting.relay,
                      detectors::relay::ParseRelayConfig(c.detectors.Child("relay")));
  RW_RETURN_IF_ERROR(ParseSites(root, c.alerting));
  RW_RETURN_IF_ERROR(ParseScoring(root.Child("scoring"), c.alerting.scoring));
  RW_ASSIGN_OR_RETURN(c.alerting.entry_points, root.CidrList("entry_points"));
  RW_ASSIGN_OR_RETURN(detectors::stack::StackConfig stack,
                      detectors::stack::ParseStackConfig(c.detectors.Child("stack")));
  c.alerting.shared_line_window = stack.shared_line_window;
  c.alerting.shared_line_min_devices = stack.shared_line_min_devices;
  c.alerting.max_public_addresses = stack.max_public_addresses;
  c.alerting.vpn_ports = stack.vpn_ports;
  // Inventory, lists and GeoIP are read here, so `-T` checks the files and a reload whose
  // files are bad keeps the running configuration.
  RW_ASSIGN_OR_RETURN(const detectors::context::ContextConfig context,
                      detectors::context::ParseContextConfig(root.Child("context")));
  RW_ASSIGN_OR_RETURN(c.alerting.context, detectors::context::LoadContext(context));
  return c;
}

absl::StatusOr<Config> LoadConfig(const std::string& path) {
  if (path.empty()) {
    RW_ASSIGN_OR_RETURN(config::Section root, config::LoadString("", "<built-in defaults>"));
    return ParseConfig(root);
  }
  RW_ASSIGN_OR_RETURN(config::Section root, config::LoadFile(path));
  return ParseConfig(root);
}

}  // namespace relaywatch::daemon
