-- SCIM provisioning: per-token adoption of existing members, and indexes for SCIM filters.
ALTER TABLE api_tokens ADD COLUMN adopt_existing BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX members_display_name_lower ON members (LOWER(display_name));
CREATE INDEX members_employee_number ON members (employee_number);
CREATE INDEX members_updated_at ON members (updated_at);
CREATE INDEX groups_name_lower ON groups (LOWER(name));
