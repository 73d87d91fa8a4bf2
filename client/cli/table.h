#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace eventbus::cli {

// A plain-text table for the admin commands' output:
//
//   TOPIC   PARTITIONS  REPLICATION
//   orders  6           3
//
// Columns are left-aligned and as wide as their widest cell, two spaces
// apart; no line ends in spaces, so `awk` and `column` read it as
// whitespace-separated fields (as long as no cell holds a space).
class Table {
 public:
  // `header` names the columns, in capitals by convention.
  explicit Table(std::vector<std::string> header);

  // Adds a row. A row shorter than the header is padded with empty cells;
  // cells beyond the header's columns are dropped.
  void AddRow(std::vector<std::string> row);

  size_t rows() const { return rows_.size(); }

  // The header and every row in the order added, each line ending in '\n'.
  std::string Render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace eventbus::cli
