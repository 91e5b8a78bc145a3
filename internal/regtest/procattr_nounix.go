//go:build !unix

package regtest

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
