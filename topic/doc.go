// Package topic defines the names messages are published to, the patterns
// subscribers listen on, and the index that matches one against the other.
//
// # Topics
//
// A topic is a dot-separated name such as "events.process.lifecycle":
//
//   - 1 to 8 segments (MaxSegments), at most 256 bytes in all (MaxLength);
//   - every segment is non-empty and uses only a-z, 0-9, '_' and '-';
//   - the first segment is a registered domain; the default domains are
//     "events" and "control" (DefaultDomains).
//
// # Patterns
//
// A pattern follows the same grammar, except that a whole segment may be a
// wildcard:
//
//   - "+" matches exactly one segment, never an empty or missing one;
//   - "#" matches zero or more trailing segments and may only be the last
//     segment, so "events.#" matches "events" and "events.a.b", and "#"
//     matches every topic.
//
// Matching is segment-wise: "events.process.#" does not match
// "events.processx". A wildcard mixed with other characters ("a+", "#x",
// "##") is an error, and so is "*", which other brokers use; the error says
// which segment broke which rule. When the first segment of a pattern is a
// literal it must be a registered domain.
//
// [Validate], [ValidatePattern] and [Match] apply the default [Policy]; an
// embedder that needs other domains or limits builds its own Policy.
//
// # Index
//
// [Index] stores subscriptions by pattern in a trie whose nodes hold their
// "+" and "#" children directly, so a match walks at most two branches per
// segment without allocating. Results are kept in a bounded cache that is
// invalidated entry by entry when a subscription is added or removed, and
// every change bumps a generation number that callers can use to keep
// caches of their own.
//
// Entries belong to an owner (a subscriber). When several patterns of one
// owner match a topic, [Index.Match] returns only the most specific one,
// compared segment by segment from the left: a literal beats "+", and "+"
// beats "#"; a pattern that ends with the topic beats one that continues
// with "#". [Specificity] exposes that order.
package topic
