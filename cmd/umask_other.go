//go:build !unix

package cmd

func privateUmask() {}
