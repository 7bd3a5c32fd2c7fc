#include "detectors/common/dns.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

#include "capture/base/bytes.h"

namespace relaywatch::detectors::common {
namespace {

// Offsets are checked by the callers (capture/base/bytes.h readers do not check).
std::uint16_t Be16(Bytes b, std::size_t at) {
  return relaywatch::Be16(b.data() + at);
}

// Buffer capacity a DnsTcpFramer keeps between messages.
constexpr std::size_t kKeepCapacity = 4096;

std::uint32_t Be32(Bytes b, std::size_t at) {
  return relaywatch::Be32(b.data() + at);
}

// Appends one byte of a label or character-string in presentation form, unless that would
// pass the text cap. Returns false once the cap is reached.
bool AppendEscaped(std::string& text, std::uint8_t c, bool lower, bool escape_dot) {
  char buf[4];
  std::size_t n = 0;
  if (c < 0x20 || c > 0x7e) {
    buf[0] = '\\';
    buf[1] = static_cast<char>('0' + c / 100);
    buf[2] = static_cast<char>('0' + (c / 10) % 10);
    buf[3] = static_cast<char>('0' + c % 10);
    n = 4;
  } else if (c == '\\' || (escape_dot && c == '.')) {
    buf[0] = '\\';
    buf[1] = static_cast<char>(c);
    n = 2;
  } else {
    buf[0] = static_cast<char>(lower && c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    n = 1;
  }
  if (text.size() + n > kMaxDnsTextBytes) {
    return false;
  }
  text.append(buf, n);
  return true;
}

// Reads a question or record name and maps the name's own status to the section's
// truncation status: a name that runs off the end is a truncated question/record.
DnsParseStatus ReadOwnerName(Bytes message, std::size_t offset, std::string* text,
                             std::size_t* next, DnsParseStatus truncated) {
  const DnsParseStatus status = ReadDnsName(message, offset, text, next);
  return status == DnsParseStatus::kTruncatedRecord ? truncated : status;
}

// A name that fills the rdata from `offset`: its in-place bytes must end exactly at the
// rdata's end (a compression pointer may point anywhere earlier in the message).
DnsParseStatus RdataName(Bytes message, std::size_t offset, std::size_t rdata_end,
                         std::string* text) {
  std::size_t next = 0;
  if (ReadDnsName(message, offset, text, &next) != DnsParseStatus::kOk || next != rdata_end) {
    return DnsParseStatus::kBadRdata;
  }
  return DnsParseStatus::kOk;
}

DnsParseStatus ParseRdata(Bytes message, std::size_t start, std::size_t length, bool store,
                          DnsRecord& record) {
  const std::size_t end = start + length;
  std::string* text = store ? &record.data : nullptr;
  switch (record.type) {
    case kDnsTypeA:
      if (length != 4) {
        return DnsParseStatus::kBadRdata;
      }
      if (store) {
        record.address = IpAddress::FromV4(message.data() + start);
        record.data = record.address.ToString();
      }
      break;
    case kDnsTypeAaaa:
      if (length != 16) {
        return DnsParseStatus::kBadRdata;
      }
      if (store) {
        record.address = IpAddress::FromV6(message.data() + start);
        record.data = record.address.ToString();
      }
      break;
    case kDnsTypeNs:
    case kDnsTypeCname:
    case kDnsTypePtr:
      if (length == 0) {
        return DnsParseStatus::kBadRdata;
      }
      if (DnsParseStatus s = RdataName(message, start, end, text); s != DnsParseStatus::kOk) {
        return s;
      }
      break;
    case kDnsTypeMx: {
      if (length < 3) {
        return DnsParseStatus::kBadRdata;
      }
      std::string name;
      if (DnsParseStatus s = RdataName(message, start + 2, end, store ? &name : nullptr);
          s != DnsParseStatus::kOk) {
        return s;
      }
      if (store) {
        record.data = absl::StrCat(Be16(message, start), " ", name);
      }
      break;
    }
    case kDnsTypeSrv: {
      if (length < 7) {
        return DnsParseStatus::kBadRdata;
      }
      std::string name;
      if (DnsParseStatus s = RdataName(message, start + 6, end, store ? &name : nullptr);
          s != DnsParseStatus::kOk) {
        return s;
      }
      if (store) {
        record.data = absl::StrCat(Be16(message, start), " ", Be16(message, start + 2), " ",
                                   Be16(message, start + 4), " ", name);
      }
      break;
    }
    case kDnsTypeTxt: {
      // RFC 1035 3.3.14: one or more <character-string>s that exactly fill the rdata.
      if (length == 0) {
        return DnsParseStatus::kBadRdata;
      }
      std::size_t at = start;
      bool first = true;
      while (at < end) {
        const std::size_t n = message[at];
        if (at + 1 + n > end) {
          return DnsParseStatus::kBadRdata;
        }
        if (first && store) {
          for (std::size_t i = 0; i < n; ++i) {
            if (!AppendEscaped(record.data, message[at + 1 + i], false, false)) {
              break;
            }
          }
        }
        first = false;
        at += 1 + n;
      }
      break;
    }
    case kDnsTypeSvcb:
    case kDnsTypeHttps: {
      // RFC 9460 2.2: SvcPriority, TargetName, then SvcParams (not decoded).
      if (length < 3) {
        return DnsParseStatus::kBadRdata;
      }
      std::size_t next = 0;
      if (ReadDnsName(message, start + 2, text, &next) != DnsParseStatus::kOk || next > end) {
        return DnsParseStatus::kBadRdata;
      }
      break;
    }
    default:
      return DnsParseStatus::kOk;  // kept as its type number, rdata not decoded
  }
  record.has_data = store;
  return DnsParseStatus::kOk;
}

DnsParseStatus ParseSection(Bytes message, std::size_t& pos, std::uint16_t count,
                            std::size_t max_store, bool mdns_bits, std::vector<DnsRecord>& out,
                            std::uint32_t& not_stored) {
  for (std::uint32_t i = 0; i < count; ++i) {
    const bool store = out.size() < max_store;
    DnsRecord scratch;
    DnsRecord& record = store ? out.emplace_back() : scratch;
    std::size_t next = 0;
    if (DnsParseStatus s = ReadOwnerName(message, pos, store ? &record.name : nullptr, &next,
                                         DnsParseStatus::kTruncatedRecord);
        s != DnsParseStatus::kOk) {
      return s;
    }
    if (next + 10 > message.size()) {
      return DnsParseStatus::kTruncatedRecord;
    }
    record.type = Be16(message, next);
    const std::uint16_t klass = Be16(message, next + 2);
    // The top class bit is mDNS cache-flush, except in OPT where the class is a UDP size.
    const bool flag_bit = mdns_bits && record.type != kDnsTypeOpt;
    record.klass = flag_bit ? klass & 0x7fff : klass;
    record.cache_flush = flag_bit && (klass & 0x8000) != 0;
    record.ttl = Be32(message, next + 4);
    record.rdlength = Be16(message, next + 8);
    const std::size_t rdata = next + 10;
    if (rdata + record.rdlength > message.size()) {
      return DnsParseStatus::kTruncatedRecord;
    }
    if (DnsParseStatus s = ParseRdata(message, rdata, record.rdlength, store, record);
        s != DnsParseStatus::kOk) {
      return s;
    }
    if (!store) {
      ++not_stored;
    }
    pos = rdata + record.rdlength;
  }
  return DnsParseStatus::kOk;
}

}  // namespace

std::string_view DnsParseStatusName(DnsParseStatus status) {
  switch (status) {
    case DnsParseStatus::kOk:
      return "ok";
    case DnsParseStatus::kTruncatedHeader:
      return "truncated_header";
    case DnsParseStatus::kTruncatedQuestion:
      return "truncated_question";
    case DnsParseStatus::kTruncatedRecord:
      return "truncated_record";
    case DnsParseStatus::kBadName:
      return "bad_name";
    case DnsParseStatus::kBadRdata:
      return "bad_rdata";
  }
  return "unknown";
}

void DnsMessage::Clear() {
  header = DnsHeader{};
  questions.clear();
  answers.clear();
  authority.clear();
  additional.clear();
  not_stored = 0;
  trailing_bytes = 0;
}

DnsParseStatus ReadDnsName(Bytes message, std::size_t offset, std::string* text,
                           std::size_t* next) {
  if (text != nullptr) {
    text->clear();
  }
  std::size_t pos = offset;
  std::size_t wire = 0;  // label bytes plus length octets, excluding the root octet
  std::size_t end = 0;
  bool jumped = false;
  int jumps = 0;
  bool room = true;  // the text cap has not been reached
  // Terminates: every pass either consumes a label (wire grows, capped at 254) or follows a
  // pointer (capped at kMaxDnsPointerJumps).
  while (true) {
    if (pos >= message.size()) {
      return jumped ? DnsParseStatus::kBadName : DnsParseStatus::kTruncatedRecord;
    }
    const std::uint8_t b = message[pos];
    if ((b & 0xc0) == 0xc0) {
      if (pos + 1 >= message.size()) {
        return jumped ? DnsParseStatus::kBadName : DnsParseStatus::kTruncatedRecord;
      }
      const std::size_t target = (std::size_t{b & 0x3fU} << 8) | message[pos + 1];
      if (!jumped) {
        end = pos + 2;
        jumped = true;
      }
      // A pointer must land inside the message, on something other than the header.
      if (++jumps > kMaxDnsPointerJumps || target < kDnsHeaderBytes || target >= message.size()) {
        return DnsParseStatus::kBadName;
      }
      pos = target;
      continue;
    }
    if ((b & 0xc0) != 0) {
      return DnsParseStatus::kBadName;  // 0x40 extended / 0x80 reserved label types
    }
    if (b == 0) {
      if (!jumped) {
        end = pos + 1;
      }
      break;
    }
    const std::size_t n = b;  // <= 63 by the two checks above
    if (pos + 1 + n > message.size()) {
      return jumped ? DnsParseStatus::kBadName : DnsParseStatus::kTruncatedRecord;
    }
    wire += 1 + n;
    if (wire + 1 > kMaxDnsNameWireBytes) {
      return DnsParseStatus::kBadName;
    }
    if (text != nullptr && room) {
      if (!text->empty()) {
        room = text->size() + 1 <= kMaxDnsTextBytes;
        if (room) {
          text->push_back('.');
        }
      }
      for (std::size_t i = 0; room && i < n; ++i) {
        room = AppendEscaped(*text, message[pos + 1 + i], true, true);
      }
    }
    pos += 1 + n;
  }
  if (text != nullptr && text->empty()) {
    text->assign(".");
  }
  *next = end;
  return DnsParseStatus::kOk;
}

DnsParseStatus ParseDnsMessage(Bytes message, const DnsParseLimits& limits, DnsMessage& out) {
  out.Clear();
  if (message.size() < kDnsHeaderBytes) {
    return DnsParseStatus::kTruncatedHeader;
  }
  DnsHeader& h = out.header;
  h.id = Be16(message, 0);
  h.flags = Be16(message, 2);
  h.qr = (h.flags & 0x8000) != 0;
  h.opcode = static_cast<std::uint8_t>((h.flags >> 11) & 0x0f);
  h.aa = (h.flags & 0x0400) != 0;
  h.tc = (h.flags & 0x0200) != 0;
  h.rd = (h.flags & 0x0100) != 0;
  h.ra = (h.flags & 0x0080) != 0;
  h.z = (h.flags & 0x0040) != 0;
  h.ad = (h.flags & 0x0020) != 0;
  h.cd = (h.flags & 0x0010) != 0;
  h.rcode = static_cast<std::uint8_t>(h.flags & 0x0f);
  h.qdcount = Be16(message, 4);
  h.ancount = Be16(message, 6);
  h.nscount = Be16(message, 8);
  h.arcount = Be16(message, 10);

  // mDNS reuses the class's top bit; it is decoded for every message because the parser
  // does not know the port, and a unicast class IN (1) never has it set.
  std::size_t pos = kDnsHeaderBytes;
  for (std::uint32_t i = 0; i < h.qdcount; ++i) {
    const bool store = out.questions.size() < limits.max_questions;
    DnsQuestion scratch;
    DnsQuestion& q = store ? out.questions.emplace_back() : scratch;
    std::size_t next = 0;
    if (DnsParseStatus s = ReadOwnerName(message, pos, store ? &q.name : nullptr, &next,
                                         DnsParseStatus::kTruncatedQuestion);
        s != DnsParseStatus::kOk) {
      return s;
    }
    if (next + 4 > message.size()) {
      return DnsParseStatus::kTruncatedQuestion;
    }
    q.type = Be16(message, next);
    const std::uint16_t klass = Be16(message, next + 2);
    q.klass = klass & 0x7fff;
    q.unicast_response = (klass & 0x8000) != 0;
    if (!store) {
      ++out.not_stored;
    }
    pos = next + 4;
  }
  if (DnsParseStatus s = ParseSection(message, pos, h.ancount, limits.max_answers, true,
                                      out.answers, out.not_stored);
      s != DnsParseStatus::kOk) {
    return s;
  }
  if (DnsParseStatus s = ParseSection(message, pos, h.nscount, limits.max_authority, true,
                                      out.authority, out.not_stored);
      s != DnsParseStatus::kOk) {
    return s;
  }
  if (DnsParseStatus s = ParseSection(message, pos, h.arcount, limits.max_additional, true,
                                      out.additional, out.not_stored);
      s != DnsParseStatus::kOk) {
    return s;
  }
  out.trailing_bytes = message.size() - pos;
  return DnsParseStatus::kOk;
}

std::string DnsTypeName(std::uint16_t type) {
  struct Entry {
    std::uint16_t type;
    const char* name;
  };
  // IANA "Resource Record (RR) TYPEs": the ones a sensor meets in practice.
  static constexpr Entry kNames[] = {
      {1, "A"},      {2, "NS"},     {5, "CNAME"}, {6, "SOA"},    {10, "NULL"}, {12, "PTR"},
      {13, "HINFO"}, {15, "MX"},    {16, "TXT"},  {28, "AAAA"},  {33, "SRV"},  {35, "NAPTR"},
      {39, "DNAME"}, {41, "OPT"},   {43, "DS"},   {46, "RRSIG"}, {47, "NSEC"}, {48, "DNSKEY"},
      {50, "NSEC3"}, {52, "TLSA"},  {64, "SVCB"}, {65, "HTTPS"}, {99, "SPF"},  {250, "TSIG"},
      {251, "IXFR"}, {252, "AXFR"}, {255, "ANY"}, {257, "CAA"},
  };
  for (const Entry& e : kNames) {
    if (e.type == type) {
      return e.name;
    }
  }
  return absl::StrCat("TYPE", type);
}

std::string DnsRcodeName(std::uint8_t rcode) {
  static constexpr const char* kNames[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN",
                                           "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
                                           "NXRRSET", "NOTAUTH", "NOTZONE"};
  if (rcode < std::size(kNames)) {
    return kNames[rcode];
  }
  return absl::StrCat("RCODE", rcode);
}

bool IsPlausibleDns(const DnsMessage& message, bool mdns) {
  const DnsHeader& h = message.header;
  // RFC 6895 2.2: 0 QUERY, 1 IQUERY (obsolete), 2 STATUS, 4 NOTIFY, 5 UPDATE, 6 DSO.
  if (h.opcode == 3 || h.opcode > 6) {
    return false;
  }
  if (mdns) {
    // RFC 6762 18: mDNS messages use opcode 0 only.
    return h.opcode == 0;
  }
  if (h.qdcount > 1) {
    return false;
  }
  if (!h.qr && h.opcode == 0 && h.ancount > 0) {
    return false;
  }
  return true;
}

void DnsTcpFramer::Reset() {
  buffer_.clear();
  skip_ = 0;
}

void DnsTcpFramer::Feed(Bytes bytes, absl::FunctionRef<void(Bytes)> on_message) {
  while (!bytes.empty()) {
    if (skip_ > 0) {
      const std::size_t n = std::min(skip_, bytes.size());
      skip_ -= n;
      bytes = bytes.subspan(n);
      continue;
    }
    if (buffer_.empty()) {
      if (bytes.size() < 2) {
        buffer_.push_back(bytes[0]);
        return;
      }
      const std::size_t length = Be16(bytes, 0);
      if (length > max_message_bytes_) {
        ++oversized_;
        skip_ = length;
        bytes = bytes.subspan(2);
        continue;
      }
      if (bytes.size() >= 2 + length) {
        // The common case: the whole message is in this segment; no copy.
        on_message(bytes.subspan(2, length));
        bytes = bytes.subspan(2 + length);
        continue;
      }
      buffer_.reserve(2 + length);  // never grows past the message, so never past the cap
      buffer_.assign(bytes.begin(), bytes.end());
      return;
    }
    if (buffer_.size() < 2) {
      buffer_.push_back(bytes[0]);
      bytes = bytes.subspan(1);
      const std::size_t length = Be16(Bytes(buffer_), 0);
      if (length > max_message_bytes_) {
        ++oversized_;
        skip_ = length;
        buffer_.clear();
      } else if (length == 0) {
        buffer_.clear();
        on_message(Bytes());
      } else {
        buffer_.reserve(2 + length);
      }
      continue;
    }
    const std::size_t length = Be16(Bytes(buffer_), 0);
    const std::size_t missing = 2 + length - buffer_.size();
    const std::size_t n = std::min(missing, bytes.size());
    buffer_.insert(buffer_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    bytes = bytes.subspan(n);
    if (n == missing) {
      on_message(Bytes(buffer_).subspan(2));
      buffer_.clear();
      // Keep a small buffer for the next message; give a large one back.
      if (buffer_.capacity() > kKeepCapacity) {
        std::vector<std::uint8_t>().swap(buffer_);
      }
    }
  }
}

}  // namespace relaywatch::detectors::common
