#pragma once

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace eventbus::client {

// Which deliveries a Subscriber keeps extending the ack deadline of (their
// leases): each from its arrival until it is settled, for at most
// `max_extension`. Plain code, time as an argument; the owner serializes
// calls.
class LeaseBook {
 public:
  explicit LeaseBook(absl::Duration max_extension)
      : max_extension_(max_extension) {}

  // Delivery `id` arrived at `now`; leased from now on.
  void Arrived(uint64_t id, absl::Time now) { leased_.emplace(id, now); }
  // Settled (acked, nacked, dead-lettered) or refused by the server: no
  // longer leased.
  void Settled(uint64_t id) { leased_.erase(id); }
  void Clear() { leased_.clear(); }
  bool leased(uint64_t id) const { return leased_.contains(id); }
  size_t size() const { return leased_.size(); }

  // The ids to extend at `now`, in no particular order. Those leased for
  // `max_extension` or longer are no longer leased: they go to `*given_up`
  // (their deadlines pass and the server redelivers them).
  std::vector<uint64_t> Due(absl::Time now, std::vector<uint64_t>* given_up) {
    std::vector<uint64_t> extend;
    extend.reserve(leased_.size());
    const absl::Time give_up_before = now - max_extension_;
    for (auto it = leased_.begin(); it != leased_.end();) {
      const auto [id, arrived] = *it;
      if (arrived <= give_up_before) {
        given_up->push_back(id);
        leased_.erase(it++);
        continue;
      }
      extend.push_back(id);
      ++it;
    }
    return extend;
  }

 private:
  const absl::Duration max_extension_;
  absl::flat_hash_map<uint64_t, absl::Time> leased_;
};

}  // namespace eventbus::client
