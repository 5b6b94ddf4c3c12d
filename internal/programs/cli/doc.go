// Package cli implements the daemoneye-cli command. It is a package rather
// than code in main so that tests run it in-process.
package cli
