#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Abseil 20220623 ships no status macros; ours carry a project prefix so they can never
// collide with another library's.

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RW_RETURN_IF_ERROR(expr)                              \
  do {                                                        \
    if (::absl::Status rw_status = (expr); !rw_status.ok()) { \
      return rw_status;                                       \
    }                                                         \
  } while (false)

// RW_ASSIGN_OR_RETURN(lhs, rexpr): on error returns rexpr's status, else moves its value
// into lhs (which may be a declaration). RW_CONCAT pastes after expanding __LINE__.
#define RW_CONCAT_INNER(a, b) a##b
#define RW_CONCAT(a, b) RW_CONCAT_INNER(a, b)
#define RW_ASSIGN_OR_RETURN(lhs, rexpr) \
  RW_ASSIGN_OR_RETURN_IMPL(RW_CONCAT(rw_statusor_, __LINE__), lhs, rexpr)
#define RW_ASSIGN_OR_RETURN_IMPL(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                             \
  if (!tmp.ok()) {                                \
    return std::move(tmp).status();               \
  }                                               \
  lhs = std::move(tmp).value()
