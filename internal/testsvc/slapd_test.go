package testsvc

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func TestSlapdStartsWithTheDirectory(t *testing.T) {
	s := StartSlapd(t)
	c := s.Admin(t)
	res, err := c.Search(ldap.NewSearchRequest("dc=example,dc=com", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(uid=alice)", []string{"memberOf", "entryUUID"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != 1 {
		t.Fatalf("alice: %d entries", len(res.Entries))
	}
	if got := res.Entries[0].GetAttributeValues("memberOf"); len(got) != 2 {
		t.Errorf("alice's memberOf = %q, want ops and finance (memberof overlay)", got)
	}
	if res.Entries[0].GetAttributeValue("entryUUID") == "" {
		t.Error("no entryUUID")
	}
}

func TestParseLDIF(t *testing.T) {
	got, err := parseLDIF("# c\ndn: cn=a,dc=x\ncn: a\ndescription: long\n  line\nmember: 1\nmember: 2\nsn:: Zm9v\n\ndn: cn=b\ncn: b\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].dn != "cn=a,dc=x" || len(got[0].attrs) != 4 || got[0].attrs[1].values[0] != "long line" ||
		len(got[0].attrs[2].values) != 2 || got[0].attrs[3].values[0] != "foo" || got[1].dn != "cn=b" {
		t.Fatalf("%+v", got)
	}
}
