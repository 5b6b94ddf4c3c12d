module github.com/daemoneye/daemoneye

go 1.26
