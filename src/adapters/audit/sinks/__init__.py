"""The destinations of the audit trail (`audit.sinks`), each an `AuditSink`."""
