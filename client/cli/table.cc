#include "client/cli/table.h"

#include <algorithm>
#include <utility>

namespace eventbus::cli {
namespace {

// Width of `s` on a terminal, as its number of UTF-8 code points: config
// values and client ids may hold non-ASCII text, and padding by bytes would
// push the columns after them out of line. (Wide CJK characters still
// count as one.)
size_t DisplayWidth(const std::string& s) {
  size_t width = 0;
  for (const char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++width;
  }
  return width;
}

}  // namespace

Table::Table(std::vector<std::string> header) : header_(std::move(header)) {}

void Table::AddRow(std::vector<std::string> row) {
  row.resize(header_.size());
  rows_.push_back(std::move(row));
}

std::string Table::Render() const {
  std::vector<size_t> widths(header_.size(), 0);
  auto measure = [&widths](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], DisplayWidth(row[i]));
    }
  };
  measure(header_);
  for (const auto& row : rows_) measure(row);

  std::string out;
  auto render = [&out, &widths](const std::vector<std::string>& row) {
    const size_t line_start = out.size();
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) out.append(2, ' ');
      out += row[i];
      if (i + 1 < row.size()) out.append(widths[i] - DisplayWidth(row[i]), ' ');
    }
    // Empty cells at the end of a row would leave padding behind.
    const size_t end = out.find_last_not_of(' ');
    out.resize(end == std::string::npos || end < line_start ? line_start
                                                             : end + 1);
    out.push_back('\n');
  };
  render(header_);
  for (const auto& row : rows_) render(row);
  return out;
}

}  // namespace eventbus::cli
