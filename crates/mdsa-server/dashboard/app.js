// The dashboard's script (filled in by the dashboard work).
