#include "detectors/context/csv.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace relaywatch::detectors::context {

CsvReader::CsvReader(absl::string_view text, absl::string_view name, CsvLimits limits)
    : text_(text), name_(name), limits_(limits) {
  if (absl::StartsWith(text_, "\xef\xbb\xbf")) {
    pos_ = 3;
  }
}

absl::Status CsvReader::Error(int line, absl::string_view what) const {
  return absl::InvalidArgumentError(absl::StrCat(name_, ":", line, ": ", what));
}

bool CsvReader::ConsumeLineBreak() {
  if (pos_ >= text_.size()) {
    return false;
  }
  if (text_[pos_] == '\r') {
    ++pos_;
    if (pos_ < text_.size() && text_[pos_] == '\n') {
      ++pos_;
    }
  } else if (text_[pos_] == '\n') {
    ++pos_;
  } else {
    return false;
  }
  ++line_;
  return true;
}

absl::StatusOr<bool> CsvReader::Next(CsvRecord& record) {
  record.fields.clear();
  // Skip empty lines.
  while (ConsumeLineBreak()) {
  }
  if (pos_ >= text_.size()) {
    return false;
  }
  record.line = line_;
  while (true) {
    if (record.fields.size() >= limits_.max_fields) {
      return Error(line_, absl::StrCat("more than ", limits_.max_fields, " fields"));
    }
    std::string& field = record.fields.emplace_back();
    const std::size_t field_number = record.fields.size();
    const auto too_long = [&] {
      return Error(line_, absl::StrCat("field ", field_number, " is longer than ",
                                       limits_.max_field_bytes, " bytes"));
    };
    if (pos_ < text_.size() && text_[pos_] == '"') {
      const int opened = line_;
      ++pos_;
      while (true) {
        if (pos_ >= text_.size()) {
          return Error(opened, absl::StrCat("field ", field_number,
                                            ": quoted field opened here is never closed"));
        }
        const char c = text_[pos_];
        if (c == '"') {
          if (pos_ + 1 < text_.size() && text_[pos_ + 1] == '"') {
            field.push_back('"');
            pos_ += 2;
          } else {
            ++pos_;
            break;
          }
        } else {
          // Line breaks inside quotes are data, but still count for line numbers.
          if (c == '\n' || (c == '\r' && (pos_ + 1 >= text_.size() || text_[pos_ + 1] != '\n'))) {
            ++line_;
          }
          field.push_back(c);
          ++pos_;
        }
        if (field.size() > limits_.max_field_bytes) {
          return too_long();
        }
      }
      if (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != '\r' && text_[pos_] != '\n') {
        return Error(line_, absl::StrCat("field ", field_number,
                                         ": text after the closing quote (write \"\" for a "
                                         "quote inside a quoted field)"));
      }
    } else {
      while (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != '\r' &&
             text_[pos_] != '\n') {
        if (text_[pos_] == '"') {
          return Error(line_, absl::StrCat("field ", field_number,
                                           ": quote inside an unquoted field (quote the whole "
                                           "field and double the quote)"));
        }
        field.push_back(text_[pos_]);
        ++pos_;
        if (field.size() > limits_.max_field_bytes) {
          return too_long();
        }
      }
    }
    if (pos_ < text_.size() && text_[pos_] == ',') {
      ++pos_;
      continue;
    }
    ConsumeLineBreak();
    return true;
  }
}

}  // namespace relaywatch::detectors::context
