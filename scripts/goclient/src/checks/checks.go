// Package checks prints the PASS/FAIL lines and the closing count the interop programs share.
package checks

import (
	"fmt"
	"os"
)

var passed, failed int

// Check prints PASS name, or FAIL name: err, and counts it.
func Check(name string, err error) {
	if err != nil {
		failed++
		fmt.Printf("FAIL %s: %v\n", name, err)
		return
	}
	passed++
	fmt.Printf("PASS %s\n", name)
}

// Finish prints "program: N passed, M failed" and exits 1 when anything failed.
func Finish(program string) {
	fmt.Printf("%s: %d passed, %d failed\n", program, passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
