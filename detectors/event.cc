#include "detectors/event.h"

#include "absl/strings/str_cat.h"
#include "capture/flow/community_id.h"
#include "capture/flow/flow_table.h"

namespace relaywatch {

FlowRef FlowRef::FromFlow(const flow::FlowState& flow, std::uint16_t community_id_seed) {
  FlowRef r;
  r.flow_id = flow.id;
  r.src_ip = flow.originator.ip;
  r.dest_ip = flow.responder.ip;
  r.src_port = flow.originator.port;
  r.dest_port = flow.responder.port;
  r.protocol = flow.protocol;
  r.community_id = flow::CommunityId(community_id_seed, r.src_ip, r.dest_ip, r.protocol,
                                     r.src_port, r.dest_port);
  return r;
}

std::string ProtoName(std::uint8_t protocol) {
  switch (protocol) {
    case 1:
      return "ICMP";
    case 6:
      return "TCP";
    case 17:
      return "UDP";
    case 58:
      return "IPv6-ICMP";
    case 132:
      return "SCTP";
    default:
      return absl::StrCat(protocol);
  }
}

}  // namespace relaywatch
