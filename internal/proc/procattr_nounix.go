//go:build !unix

package proc

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
