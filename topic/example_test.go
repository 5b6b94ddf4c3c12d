package topic_test

import (
	"fmt"

	"github.com/daemoneye/daemoneye/topic"
)

func ExampleMatch() {
	fmt.Println(topic.Match("events.process.#", "events.process.lifecycle"))
	fmt.Println(topic.Match("events.process.#", "events.process"))
	fmt.Println(topic.Match("events.process.#", "events.processx"))
	fmt.Println(topic.Match("events.+", "events.process.lifecycle"))
	// Output:
	// true
	// true
	// false
	// false
}

func ExampleValidatePattern() {
	fmt.Println(topic.ValidatePattern("events.*"))
	// Output: invalid pattern "events.*": segment 2 "*" uses '*': write '+' to match exactly one segment or '#' to match all trailing segments
}

func ExamplePolicy() {
	p := &topic.Policy{Domains: []string{"events", "control", "audit"}}
	fmt.Println(p.Validate("audit.login"))
	fmt.Println(topic.Validate("audit.login") != nil)
	// Output:
	// <nil>
	// true
}

func ExampleIndex() {
	x, _ := topic.NewIndex[string](topic.IndexOptions{})
	_ = x.Insert("events.#", 1, "archiver")
	_ = x.Insert("events.process.+", 2, "detector")
	_ = x.Insert("events.process.lifecycle", 2, "detector-lifecycle") // same owner, more specific
	got, _ := x.Match("events.process.lifecycle")
	fmt.Println(len(got), got[0] == "archiver" || got[1] == "archiver", got[0] == "detector-lifecycle" || got[1] == "detector-lifecycle")
	// Output: 2 true true
}
