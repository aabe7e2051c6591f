package wine

import "golang.org/x/sys/windows"

// Running reports whether the program runs under Wine rather than a real
// Windows: Wine's ntdll.dll exports wine_get_version.
func Running() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}
