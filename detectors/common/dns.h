#pragma once

// DNS message parsing (RFC 1035, with the mDNS bits of RFC 6762 and the record types a
// sensor needs), shared by detectors. Also parses mDNS (UDP 5353), which uses the same wire
// format, and frames DNS over TCP (RFC 1035 4.2.2, RFC 7766).
//
// Bad input: every function reads only inside the span it is given, returns a status code
// for malformed or truncated input and never throws. Name decompression is loop-safe
// (bounded pointer jumps, 255-byte wire names, labels of at most 63 bytes).
// Cost: linear in the message size; names are decoded to text only for stored records.
// Thread-safety: none needed; functions are pure, DnsTcpFramer has one owner.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"

#include "capture/base/ip_address.h"

namespace relaywatch::detectors::common {

using Bytes = std::span<const std::uint8_t>;

inline constexpr std::size_t kDnsHeaderBytes = 12;
// RFC 1035 2.3.4: a name is at most 255 bytes on the wire, a label at most 63.
inline constexpr std::size_t kMaxDnsNameWireBytes = 255;
inline constexpr std::size_t kMaxDnsLabelBytes = 63;
// Compression pointers followed while reading one name. A real name needs at most one per
// label (127); pointer-to-pointer chains beyond this are a loop or an attack.
inline constexpr int kMaxDnsPointerJumps = 64;
// Stored text (names, TXT strings) is cut to this many bytes. Plain names fit whole (253
// characters at most); only names full of escaped bytes are cut.
inline constexpr std::size_t kMaxDnsTextBytes = 256;

inline constexpr std::uint16_t kDnsPort = 53;
inline constexpr std::uint16_t kMdnsPort = 5353;

// Record types with decoded rdata (others keep only their type number).
inline constexpr std::uint16_t kDnsTypeA = 1;
inline constexpr std::uint16_t kDnsTypeNs = 2;
inline constexpr std::uint16_t kDnsTypeCname = 5;
inline constexpr std::uint16_t kDnsTypeSoa = 6;
inline constexpr std::uint16_t kDnsTypePtr = 12;
inline constexpr std::uint16_t kDnsTypeMx = 15;
inline constexpr std::uint16_t kDnsTypeTxt = 16;
inline constexpr std::uint16_t kDnsTypeAaaa = 28;
inline constexpr std::uint16_t kDnsTypeSrv = 33;
inline constexpr std::uint16_t kDnsTypeOpt = 41;
inline constexpr std::uint16_t kDnsTypeSvcb = 64;
inline constexpr std::uint16_t kDnsTypeHttps = 65;

// Why a message did not parse. Stable values: they index counters.
enum class DnsParseStatus : std::uint8_t {
  kOk = 0,
  kTruncatedHeader,    // fewer than 12 bytes
  kTruncatedQuestion,  // a question's name or fixed fields run past the end
  kTruncatedRecord,    // a record's name, fixed fields or rdata run past the end
  kBadName,            // label > 63, name > 255, reserved label type, pointer loop or out of range
  kBadRdata,           // rdata inconsistent with its type (an A record of 5 bytes, ...)
};
inline constexpr int kDnsParseStatusCount = 6;
std::string_view DnsParseStatusName(DnsParseStatus status);

struct DnsHeader {
  std::uint16_t id = 0;
  bool qr = false;  // response
  std::uint8_t opcode = 0;
  bool aa = false;
  bool tc = false;
  bool rd = false;
  bool ra = false;
  bool z = false;
  bool ad = false;
  bool cd = false;
  std::uint8_t rcode = 0;
  std::uint16_t flags = 0;  // the raw 16-bit flags word
  std::uint16_t qdcount = 0;
  std::uint16_t ancount = 0;
  std::uint16_t nscount = 0;
  std::uint16_t arcount = 0;
};

struct DnsQuestion {
  std::string name;  // see ReadDnsName() for the text form
  std::uint16_t type = 0;
  std::uint16_t klass = 0;        // without the mDNS unicast-response bit
  bool unicast_response = false;  // RFC 6762 5.4: top bit of the class ("QU")
};

struct DnsRecord {
  std::string name;
  std::uint16_t type = 0;
  std::uint16_t klass = 0;   // without the mDNS cache-flush bit
  bool cache_flush = false;  // RFC 6762 10.2: top bit of the class in mDNS responses
  std::uint32_t ttl = 0;
  std::uint16_t rdlength = 0;
  // Presentation text of the rdata for the decoded types (has_data): A/AAAA address,
  // CNAME/NS/PTR name, "pref name" for MX, "prio weight port target" for SRV, the first
  // character-string of TXT (escaped, not lower-cased), the target name of SVCB/HTTPS.
  std::string data;
  bool has_data = false;
  IpAddress address;  // A and AAAA only
};

// What ParseDnsMessage keeps. Every record is walked and checked whatever the limits; only
// the first ones of each section are stored, the rest are counted in `not_stored`.
struct DnsParseLimits {
  std::size_t max_questions = 4;
  std::size_t max_answers = 32;
  std::size_t max_authority = 0;
  std::size_t max_additional = 0;
};

struct DnsMessage {
  DnsHeader header;
  std::vector<DnsQuestion> questions;
  std::vector<DnsRecord> answers;
  std::vector<DnsRecord> authority;
  std::vector<DnsRecord> additional;
  std::uint32_t not_stored = 0;    // entries walked but beyond the limits (all sections)
  std::size_t trailing_bytes = 0;  // bytes after the last counted record

  // Empties the message and keeps the vectors' capacity for reuse.
  void Clear();
};

// Parses one whole DNS message (UDP payload, or a TCP message without its length prefix).
// On any status other than kOk, `out` holds what was read before the error.
[[nodiscard]] DnsParseStatus ParseDnsMessage(Bytes message, const DnsParseLimits& limits,
                                             DnsMessage& out);

// Reads the (possibly compressed) name starting at `offset` of `message`. On success sets
// `*next` to the offset just after the name's in-place bytes, and, when `text` is not null,
// writes its text form: labels joined by '.', ASCII lower-cased (RFC 4343), '.' and '\'
// inside labels escaped with '\', bytes outside 0x20-0x7e written as \DDD (RFC 1035 5.1);
// the root name is ".". The text is cut to kMaxDnsTextBytes.
[[nodiscard]] DnsParseStatus ReadDnsName(Bytes message, std::size_t offset, std::string* text,
                                         std::size_t* next);

// "A", "AAAA", ... for known types, "TYPE<n>" otherwise (RFC 3597).
std::string DnsTypeName(std::uint16_t type);
// "NOERROR", "NXDOMAIN", ... for RCODE 0-10, "RCODE<n>" otherwise.
std::string DnsRcodeName(std::uint8_t rcode);

// Structural plausibility beyond parsing, to tell DNS from other traffic on ports 53/5353:
// a defined opcode (QUERY, IQUERY, STATUS, NOTIFY, UPDATE, DSO); for unicast DNS at most
// one question (no server answers more), and a query carries no answers unless it is a
// NOTIFY or UPDATE.
bool IsPlausibleDns(const DnsMessage& message, bool mdns);

// Splits one direction of a DNS-over-TCP stream into messages (2-byte length prefix, any
// number of messages per segment, a message across any number of segments).
//
// Input must be the direction's bytes in order without gaps; after a gap call Reset().
// Messages longer than `max_message_bytes` are skipped without being buffered (counted in
// oversized()). At most max_message_bytes + 2 bytes are ever buffered.
class DnsTcpFramer {
 public:
  explicit DnsTcpFramer(std::size_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

  // Calls `on_message` for each complete message (length prefix stripped). The span is
  // valid only during the call.
  void Feed(Bytes bytes, absl::FunctionRef<void(Bytes)> on_message);
  // Forgets any partial message and skip in progress (the stream lost sync).
  void Reset();

  std::size_t buffered_bytes() const { return buffer_.size(); }
  std::size_t buffer_capacity() const { return buffer_.capacity(); }
  std::uint64_t oversized() const { return oversized_; }

 private:
  std::size_t max_message_bytes_;
  std::vector<std::uint8_t> buffer_;  // partial message including its 2-byte prefix
  std::size_t skip_ = 0;              // bytes of an oversized message still to discard
  std::uint64_t oversized_ = 0;
};

}  // namespace relaywatch::detectors::common
