#include "detectors/stack/fingerprint.h"

#include "absl/strings/str_cat.h"

namespace relaywatch::detectors::stack {

std::uint8_t InitialTtl(std::uint8_t observed) {
  for (std::uint8_t ttl : {32, 64, 128}) {
    if (observed <= ttl)
      return ttl;
  }
  return 255;
}

std::uint32_t MtuFromMss(std::uint16_t mss, int ip_version) {
  return static_cast<std::uint32_t>(mss) + (ip_version == 6 ? 60 : 40);
}

std::optional<LinkKind> ClassifyMtu(std::uint32_t mtu) {
  switch (mtu) {
    case 1500:
    case 9000:
    case 3924:
    case 16384:
    case 16436:
    case 65535:
      return std::nullopt;  // Ethernet, jumbo, loopback: nothing in between
    case 1492:
    case 1452:
    case 1454:
      return LinkKind{"pppoe", false};  // DSL access, not an overlay
    case 1496:
      return LinkKind{"vlan", false};
    case 1480:
      return LinkKind{"ipip", true};  // IP-in-IP, SIT, 6in4
    case 1476:
      return LinkKind{"gre_ipsec", true};
    case 1490:
      return LinkKind{"pptp", true};
    case 1420:
      return LinkKind{"wireguard", true};  // wg-quick's default interface MTU
    case 1280:
    case 1240:
      return LinkKind{"tailscale_or_gif", true};
    default:
      break;
  }
  // Anything else below Ethernet is an encapsulation we cannot name by its MTU alone:
  // OpenVPN's mssfix, IPsec with NAT-T, consumer VPN clients, nested tunnels.
  if (mtu < 1500 && mtu >= 576)
    return LinkKind{"vpn", true};
  if (mtu < 576)
    return LinkKind{"low_mtu", false};
  return std::nullopt;
}

std::string OptionLayout(const decode::TcpOptions& options) {
  std::string out;
  for (int i = 0; i < options.layout_size; ++i) {
    const std::uint8_t kind = options.layout[i];
    const char* name = nullptr;
    switch (kind) {
      case 0:
        name = "eol";
        break;
      case 1:
        name = "nop";
        break;
      case 2:
        name = "mss";
        break;
      case 3:
        name = "ws";
        break;
      case 4:
        name = "sok";
        break;
      case 5:
        name = "sack";
        break;
      case 8:
        name = "ts";
        break;
      default:
        break;
    }
    if (!out.empty())
      out += ',';
    if (name != nullptr) {
      out += name;
    } else {
      absl::StrAppend(&out, "?", kind);
    }
  }
  return out;
}

SynSignature SignatureOf(const decode::DecodedPacket& syn) {
  SynSignature s;
  s.ip_version = syn.ip_version;
  s.initial_ttl = InitialTtl(syn.ttl);
  s.hops = static_cast<std::uint8_t>(s.initial_ttl - syn.ttl);
  s.window = syn.window;
  s.mss = syn.tcp_options.has_mss ? syn.tcp_options.mss : 0;
  s.window_scale = syn.tcp_options.has_window_scale ? syn.tcp_options.window_scale : -1;
  s.timestamps = syn.tcp_options.has_timestamps;
  s.sack = syn.tcp_options.sack_permitted;
  s.df = syn.dont_fragment;
  s.layout = OptionLayout(syn.tcp_options);
  return s;
}

std::string SynSignature::Key(bool with_mss) const {
  return absl::StrCat(ip_version, ":", initial_ttl, ":", hops, ":",
                      with_mss ? absl::StrCat(mss) : std::string("*"), ":", window, ",",
                      window_scale, ":", layout, ":", df ? "df" : "");
}

}  // namespace relaywatch::detectors::stack
