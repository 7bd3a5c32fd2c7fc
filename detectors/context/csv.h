#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace relaywatch::detectors::context {

// One CSV record: its fields (unquoted) and the line it starts on (1-based).
struct CsvRecord {
  int line = 0;
  std::vector<std::string> fields;
};

struct CsvLimits {
  std::size_t max_fields = 64;         // per record
  std::size_t max_field_bytes = 4096;  // per field, after unquoting
};

// Reads RFC 4180 CSV one record at a time from text it does not own.
//
// Fields are separated by ',' and records by CRLF, LF or a lone CR. A field that starts with
// '"' is quoted: it may hold ',', line breaks and '""' (one quote), and must be followed by a
// separator, a line break or the end. A quote inside an unquoted field is an error, and so is
// an unterminated quoted field. Empty lines are skipped; a UTF-8 byte-order mark at the start
// is ignored (spreadsheets write one). Errors read "name:line: what".
class CsvReader {
 public:
  CsvReader(absl::string_view text, absl::string_view name, CsvLimits limits = {});

  // Reads the next record into `record`; false at the end of the text.
  absl::StatusOr<bool> Next(CsvRecord& record);

  // The line the reader is on (1-based).
  int line() const { return line_; }

 private:
  absl::Status Error(int line, absl::string_view what) const;
  // Consumes a line break at pos_ if there is one.
  bool ConsumeLineBreak();

  absl::string_view text_;
  std::string name_;
  CsvLimits limits_;
  std::size_t pos_ = 0;
  int line_ = 1;
};

}  // namespace relaywatch::detectors::context
