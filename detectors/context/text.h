#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// Small text helpers shared by the context file parsers.
namespace relaywatch::detectors::context {

// `text` in double quotes with non-printable bytes C-escaped, cut to 80 bytes ("..." marks
// the cut): safe to put a value read from a file into an error message or a log line.
std::string Quote(absl::string_view text);

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or values past
// U+10FFFF). The JSON sinks refuse anything else, so names from files are checked on load.
bool IsValidUtf8(absl::string_view text);

// True when `text` holds an ASCII control character (0x00-0x1f or 0x7f), which could forge
// lines in a syslog message or a terminal.
bool HasControlCharacter(absl::string_view text);

// Removes spaces and tabs at both ends.
absl::string_view TrimBlanks(absl::string_view text);

// The size of a regular file. Errors: NotFound (missing), InvalidArgument (not a regular
// file: a device or FIFO), Unavailable (other stat errors); each message starts with the path.
absl::StatusOr<std::uint64_t> RegularFileSize(const std::string& path);

// Reads a whole regular file of at most `max_bytes`. Errors: NotFound (missing),
// InvalidArgument (not a regular file, or too large: "path: N bytes, more than the limit of
// M"), Unavailable (read error); each message starts with the path.
absl::StatusOr<std::string> ReadTextFile(const std::string& path, std::size_t max_bytes);

}  // namespace relaywatch::detectors::context
