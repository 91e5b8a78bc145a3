// Package depcheck holds no code, only the test that keeps the import rules
// of the layout true (see README, Layout): what the shipped binary may link,
// and what the packages at the core of a request's walk may not.
package depcheck
