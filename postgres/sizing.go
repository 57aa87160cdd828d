package postgres

import (
	"context"
	"fmt"
	"time"
)

// sqlPoolSizing reads the server's connection limit and counts the
// instances of the service connected to it now, told apart by their
// application_name (ApplicationNameDefault followed by the instance id,
// see Config.InstanceID), $1 being this instance's.
const sqlPoolSizing = `
SELECT current_setting('max_connections')::int,
	current_setting('superuser_reserved_connections')::int,
	(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int,
	(SELECT count(DISTINCT application_name) FROM pg_stat_activity
	 WHERE application_name LIKE $2 AND application_name <> $1)::int`

// PoolSizing is what CheckPoolSizing found.
type PoolSizing struct {
	MaxConnections int // the server's max_connections less superuser_reserved_connections
	InUse          int // client connections open now, of any application
	Instances      int // instances of this service seen, this one included
	PerInstance    int // this instance's most connections: DB_MAX_CONNECTIONS, plus one to listen
	// Need is Instances × PerInstance: what the instances may open at
	// once if each is configured as this one.
	Need int
}

// Fits reports whether the instances' pools fit in the server's limit.
func (p PoolSizing) Fits() bool { return p.Need <= p.MaxConnections }

// CheckPoolSizing compares what the instances of the service on this
// database server may open (instances × (DB_MAX_CONNECTIONS + 1)) with the
// server's max_connections. The instances are counted by application_name,
// which carries the instance id when Config.InstanceID is set. Behind a
// pooler (Config.Pooler) the server's connections are the pooler's to
// size, and the answer describes the direct connections only.
func (s *Store) CheckPoolSizing(ctx context.Context) (PoolSizing, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var p PoolSizing
	var reserved, others int
	err := s.pool.QueryRow(ctx, sqlPoolSizing, s.applicationName(), ApplicationNameDefault+" %").
		Scan(&p.MaxConnections, &reserved, &p.InUse, &others)
	if err != nil {
		return PoolSizing{}, interpretError("check pool sizing", err)
	}
	p.MaxConnections -= reserved
	p.Instances = others + 1
	p.PerInstance = int(s.pool.Config().MaxConns) + 1
	p.Need = p.Instances * p.PerInstance
	return p, nil
}

// applicationName is the application_name of this store's connections.
func (s *Store) applicationName() string {
	return s.pool.Config().ConnConfig.RuntimeParams["application_name"]
}

// applicationNameFor is the application_name of an instance's
// connections: the default followed by the instance id, within
// PostgreSQL's 63 bytes.
func applicationNameFor(instanceID string) string {
	name := ApplicationNameDefault
	if instanceID != "" {
		name += " " + instanceID
	}
	if len(name) > maxApplicationName {
		name = name[:maxApplicationName]
	}
	return name
}

// maxApplicationName is the longest application_name PostgreSQL keeps.
const maxApplicationName = 63

// String describes the sizing for a log line.
func (p PoolSizing) String() string {
	return fmt.Sprintf("%d instance(s) × %d connections = %d, max_connections allows %d (%d in use now)",
		p.Instances, p.PerInstance, p.Need, p.MaxConnections, p.InUse)
}
