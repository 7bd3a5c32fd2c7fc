#include "detectors/context/text.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace relaywatch::detectors::context {

std::string Quote(absl::string_view text) {
  constexpr std::size_t kMaxQuoted = 80;
  if (text.size() > kMaxQuoted) {
    return absl::StrCat("\"", absl::CHexEscape(text.substr(0, kMaxQuoted)), "...\"");
  }
  return absl::StrCat("\"", absl::CHexEscape(text), "\"");
}

bool IsValidUtf8(absl::string_view text) {
  std::size_t i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    const auto byte = [&](std::size_t k) {
      return static_cast<unsigned char>(text[k]);
    };
    const unsigned char c = byte(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t length = 0;
    std::uint32_t min = 0;
    std::uint32_t code = 0;
    if ((c & 0xe0) == 0xc0) {
      length = 2;
      min = 0x80;
      code = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      length = 3;
      min = 0x800;
      code = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      length = 4;
      min = 0x10000;
      code = c & 0x07;
    } else {
      return false;
    }
    if (n - i < length) {
      return false;
    }
    for (std::size_t k = 1; k < length; ++k) {
      if ((byte(i + k) & 0xc0) != 0x80) {
        return false;
      }
      code = (code << 6) | (byte(i + k) & 0x3f);
    }
    // RFC 3629: no overlong forms, no UTF-16 surrogates, nothing past U+10FFFF.
    if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
      return false;
    }
    i += length;
  }
  return true;
}

bool HasControlCharacter(absl::string_view text) {
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      return true;
    }
  }
  return false;
}

absl::string_view TrimBlanks(absl::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

absl::StatusOr<std::uint64_t> RegularFileSize(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    const int err = errno;
    const std::string what = absl::StrCat(path, ": ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(what) : absl::UnavailableError(what);
  }
  // A device or a FIFO would be read forever.
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  return static_cast<std::uint64_t>(st.st_size);
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path, std::size_t max_bytes) {
  absl::StatusOr<std::uint64_t> size = RegularFileSize(path);
  if (!size.ok()) {
    return size.status();
  }
  if (*size > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", *size, " bytes, more than the limit of ", max_bytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::UnavailableError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::string text;
  text.reserve(static_cast<std::size_t>(*size));
  // The file may grow between stat and read; never keep more than the limit.
  char buffer[65536];
  while (in) {
    in.read(buffer, sizeof buffer);
    text.append(buffer, static_cast<std::size_t>(in.gcount()));
    if (text.size() > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": more than the limit of ", max_bytes, " bytes"));
    }
  }
  if (in.bad()) {
    return absl::UnavailableError(absl::StrCat(path, ": read error"));
  }
  return text;
}

}  // namespace relaywatch::detectors::context
