"""The smart-metering PKI: root CA, sub-CAs, end-entity certificates, CRLs, LDAP."""
