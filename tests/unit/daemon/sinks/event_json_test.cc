#include "daemon/sinks/event_json.h"

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace relaywatch::sinks {
namespace {

// 2024-05-06T10:11:12Z
constexpr std::int64_t kUnixSeconds = 1714990272;

IpAddress Ip(absl::string_view text) {
  return *IpAddress::Parse(text);
}

std::string Dump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Event TcpAlert() {
  Event e;
  e.event_type = "alert";
  e.ts = absl::FromUnixSeconds(kUnixSeconds) + absl::Microseconds(123456);
  FlowRef f;
  f.flow_id = 1298471623840123;
  f.src_ip = Ip("10.20.30.40");
  f.dest_ip = Ip("203.0.113.7");
  f.src_port = 51515;
  f.dest_port = 443;
  f.protocol = 6;
  f.community_id = "1:JgcSb0lDMYoRj7K4XoYgS8JDZRM=";
  e.flow = f;
  e.host_ip = Ip("10.20.30.40");
  e.alert = AlertInfo{9100001, "RELAYWATCH remote desktop tunnelled over TLS",
                      "Relay / remote access", 1, "remote_access"};
  e.body = {{"app", "rdp"}};
  e.evidence = {{"pcap", "evidence/1298471623840123.pcap"}};
  return e;
}

TEST(FormatTimestamp, PrintsRfc3339UtcWithMicroseconds) {
  EXPECT_EQ(FormatTimestamp(absl::FromUnixSeconds(kUnixSeconds) + absl::Microseconds(123456)),
            "2024-05-06T10:11:12.123456Z");
}

TEST(FormatTimestamp, AlwaysPrintsSixFractionalDigits) {
  EXPECT_EQ(FormatTimestamp(absl::FromUnixSeconds(kUnixSeconds)), "2024-05-06T10:11:12.000000Z");
  EXPECT_EQ(FormatTimestamp(absl::FromUnixSeconds(kUnixSeconds) + absl::Microseconds(50)),
            "2024-05-06T10:11:12.000050Z");
}

TEST(FormatTimestamp, TruncatesNanoseconds) {
  EXPECT_EQ(FormatTimestamp(absl::FromUnixSeconds(kUnixSeconds) + absl::Nanoseconds(999999999)),
            "2024-05-06T10:11:12.999999Z");
}

TEST(EventToJson, AlertHasEveFieldsInStableOrder) {
  EXPECT_EQ(Dump(EventToJson(TcpAlert())),
            R"({"timestamp":"2024-05-06T10:11:12.123456Z","flow_id":1298471623840123,)"
            R"("event_type":"alert","src_ip":"10.20.30.40","src_port":51515,)"
            R"("dest_ip":"203.0.113.7","dest_port":443,"proto":"TCP",)"
            R"("community_id":"1:JgcSb0lDMYoRj7K4XoYgS8JDZRM=","host_ip":"10.20.30.40",)"
            R"("alert":{"action":"allowed","gid":1,"signature_id":9100001,"rev":1,)"
            R"("signature":"RELAYWATCH remote desktop tunnelled over TLS",)"
            R"("category":"Relay / remote access","severity":1,"detector":"remote_access"},)"
            R"("evidence":{"pcap":"evidence/1298471623840123.pcap"}})");
}

TEST(EventToJson, FlowIdIsANumber) {
  const nlohmann::ordered_json j = EventToJson(TcpAlert());
  ASSERT_TRUE(j["flow_id"].is_number_unsigned());
  EXPECT_EQ(j["flow_id"].get<std::uint64_t>(), 1298471623840123u);
  EXPECT_TRUE(j["src_port"].is_number());
  EXPECT_TRUE(j["alert"]["signature_id"].is_number());
}

TEST(EventToJson, BodyGoesUnderTheEventTypeKey) {
  Event e = TcpAlert();
  e.event_type = "remote_session";
  e.alert.reset();
  e.evidence = nullptr;
  e.host_ip.reset();
  e.body = {{"app", "ssh"}, {"bytes", 1234}};
  const nlohmann::ordered_json j = EventToJson(e);
  EXPECT_EQ(j["event_type"], "remote_session");
  ASSERT_TRUE(j.contains("remote_session"));
  EXPECT_EQ(j["remote_session"]["app"], "ssh");
  EXPECT_EQ(j["remote_session"]["bytes"], 1234);
  EXPECT_FALSE(j.contains("alert"));
  EXPECT_FALSE(j.contains("evidence"));
  EXPECT_FALSE(j.contains("host_ip"));
  // The body comes after the flow header.
  EXPECT_EQ(j.begin().key(), "timestamp");
  EXPECT_EQ((--j.end()).key(), "remote_session");
}

TEST(EventToJson, AlertBodyIsNotWrittenUnderAlertKey) {
  const nlohmann::ordered_json j = EventToJson(TcpAlert());
  EXPECT_FALSE(j["alert"].contains("app"));
  EXPECT_EQ(j["alert"]["action"], "allowed");
}

TEST(EventToJson, EmptyBodyIsOmitted) {
  Event e = TcpAlert();
  e.event_type = "remote_session";
  e.body = nlohmann::json::object();
  EXPECT_FALSE(EventToJson(e).contains("remote_session"));
  e.body = nullptr;
  EXPECT_FALSE(EventToJson(e).contains("remote_session"));
}

TEST(EventToJson, BodyNeverReplacesAHeaderField) {
  Event e = TcpAlert();
  e.event_type = "timestamp";
  e.body = {{"x", 1}};
  EXPECT_EQ(EventToJson(e)["timestamp"], "2024-05-06T10:11:12.123456Z");
}

TEST(EventToJson, IcmpHasNoPorts) {
  Event e = TcpAlert();
  e.flow->protocol = 1;
  e.flow->src_port = 8;
  e.flow->dest_port = 0;
  const nlohmann::ordered_json j = EventToJson(e);
  EXPECT_EQ(j["proto"], "ICMP");
  EXPECT_FALSE(j.contains("src_port"));
  EXPECT_FALSE(j.contains("dest_port"));
  EXPECT_EQ(j["src_ip"], "10.20.30.40");
  EXPECT_EQ(j["dest_ip"], "203.0.113.7");
}

TEST(EventToJson, PortsOnlyForTcpUdpSctp) {
  Event e = TcpAlert();
  for (const auto& [proto, name, ports] : {std::tuple<int, const char*, bool>{6, "TCP", true},
                                           {17, "UDP", true},
                                           {132, "SCTP", true},
                                           {58, "IPv6-ICMP", false},
                                           {46, "46", false}}) {
    e.flow->protocol = static_cast<std::uint8_t>(proto);
    const nlohmann::ordered_json j = EventToJson(e);
    EXPECT_EQ(j["proto"], name);
    EXPECT_EQ(j.contains("src_port"), ports) << name;
    EXPECT_EQ(j.contains("dest_port"), ports) << name;
  }
}

TEST(EventToJson, Ipv6AddressesAreRfc5952Text) {
  Event e = TcpAlert();
  e.flow->src_ip = Ip("2001:0db8:0000:0000:0000:0000:0000:0001");
  e.flow->dest_ip = Ip("2001:db8::2");
  const nlohmann::ordered_json j = EventToJson(e);
  EXPECT_EQ(j["src_ip"], "2001:db8::1");
  EXPECT_EQ(j["dest_ip"], "2001:db8::2");
}

TEST(EventToJson, NoFlowMeansNoFlowFields) {
  Event e;
  e.event_type = "host_score";
  e.ts = absl::FromUnixSeconds(kUnixSeconds);
  e.host_ip = Ip("192.0.2.1");
  e.body = {{"score", 7}};
  EXPECT_EQ(Dump(EventToJson(e)),
            R"({"timestamp":"2024-05-06T10:11:12.000000Z","event_type":"host_score",)"
            R"("host_ip":"192.0.2.1","host_score":{"score":7}})");
}

TEST(EventToJson, InvalidUtf8IsReplacedWhenDumpedWithReplaceHandler) {
  Event e = TcpAlert();
  e.event_type = "remote_session";
  e.alert.reset();
  e.body = {{"app", std::string("ss\xff\xfeh")}, {"sni", std::string("\xc3(")}};
  nlohmann::ordered_json j;
  ASSERT_NO_THROW(j = EventToJson(e));
  // The strict default would throw; this is why sinks must use the replace handler.
  EXPECT_THROW(j.dump(), nlohmann::json::type_error);
  std::string line;
  ASSERT_NO_THROW(line = Dump(j));
  EXPECT_NE(line.find("\"app\":\"ss\xEF\xBF\xBD\xEF\xBF\xBDh\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"sni\":\"\xEF\xBF\xBD(\""), std::string::npos) << line;
  EXPECT_TRUE(nlohmann::json::accept(line));
}

TEST(EventToJson, IsDeterministic) {
  EXPECT_EQ(Dump(EventToJson(TcpAlert())), Dump(EventToJson(TcpAlert())));
}

}  // namespace
}  // namespace relaywatch::sinks
