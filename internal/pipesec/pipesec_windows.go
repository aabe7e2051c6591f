package pipesec

import "golang.org/x/sys/windows"

// parse has Windows parse an SDDL descriptor.
func parse(v string) error {
	_, err := windows.SecurityDescriptorFromString(v)
	return err
}

// Descriptor is SDDL(v, the SID of the user this process runs as).
func Descriptor(v string) string {
	account := ""
	if u, err := windows.GetCurrentProcessToken().GetTokenUser(); err == nil {
		account = u.User.Sid.String()
	}
	return SDDL(v, account)
}
