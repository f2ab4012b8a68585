package databasetest

import "strconv"

// SweepTemplates drops the templates of ended processes of this host, as the first MigratedPostgres does.
func SweepTemplates(dsn string) { sweepTemplates(dsn) }

// TemplateName is the name of a template database made by process pid of this host.
func TemplateName(pid int, suffix string) string {
	return templatePrefix + hostTag() + "_" + strconv.Itoa(pid) + "_" + suffix
}
