#include "capture/decode/decode_counters.h"

namespace relaywatch::decode {

std::string_view DecodeReasonName(DecodeReason reason) {
  switch (reason) {
    case DecodeReason::kLinkTruncated: return "link_truncated";
    case DecodeReason::kVlanTruncated: return "vlan_truncated";
    case DecodeReason::kIpv4Truncated: return "ipv4_truncated";
    case DecodeReason::kIpv4BadVersion: return "ipv4_bad_version";
    case DecodeReason::kIpv4BadHeaderLength: return "ipv4_bad_header_length";
    case DecodeReason::kIpv4BadTotalLength: return "ipv4_bad_total_length";
    case DecodeReason::kIpv6Truncated: return "ipv6_truncated";
    case DecodeReason::kIpv6ExtensionTruncated: return "ipv6_extension_truncated";
    case DecodeReason::kTcpTruncated: return "tcp_truncated";
    case DecodeReason::kTcpBadHeaderLength: return "tcp_bad_header_length";
    case DecodeReason::kTcpBadOption: return "tcp_bad_option";
    case DecodeReason::kUdpTruncated: return "udp_truncated";
    case DecodeReason::kUdpBadLength: return "udp_bad_length";
    case DecodeReason::kIcmpTruncated: return "icmp_truncated";
    case DecodeReason::kGreTruncated: return "gre_truncated";
    case DecodeReason::kVxlanTruncated: return "vxlan_truncated";
    case DecodeReason::kGeneveTruncated: return "geneve_truncated";
    case DecodeReason::kEncapsulationTooDeep: return "encapsulation_too_deep";
    case DecodeReason::kWlanTruncated:
      return "wlan_truncated";
    case DecodeReason::kWlanBadFcs:
      return "wlan_bad_fcs";
    case DecodeReason::kUnsupportedLinkType: return "unsupported_link_type";
    case DecodeReason::kNonIp: return "non_ip";
    case DecodeReason::kIpFragment: return "ip_fragment";
    case DecodeReason::kOtherIpProtocol: return "other_ip_protocol";
    case DecodeReason::kGreUnsupported: return "gre_unsupported";
    case DecodeReason::kWlanNotData:
      return "wlan_not_data";
    case DecodeReason::kWlanProtected:
      return "wlan_protected";
    case DecodeReason::kWlanUnsupported:
      return "wlan_unsupported";
    case DecodeReason::kCount: break;
  }
  return "unknown";
}

bool IsDecodeError(DecodeReason reason) { return reason < DecodeReason::kUnsupportedLinkType; }

}  // namespace relaywatch::decode
