package ordersdb_test

import (
	"context"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orders-service/modules/orders"
	"github.com/orderflow/orders-service/modules/orders/ordersdb"
	"github.com/orderflow/orders-service/modules/testkit/dbtest"
)

// The column declarations of ordersdb (columns.go) must agree with the migrated
// schema and with the model. These tests see them through ordersdb.BatchRows,
// which lists the columns and values the store writes.

// notWritten lists, per table, the columns of the schema the store never writes
// (filled by the database).
var notWritten = map[string][]string{
	"orders": {"seq", "updated_at"},
}

// notInModel lists, per table, the declared columns that are no field of the
// model's part stored in the table; TestColumnsMatchModel checks their values apart.
var notInModel = map[string][]string{
	"orders":   {"source_partition", "source_offset", "source_time"},
	"delivery": {"order_uid"},
	"payment":  {"order_uid"},
	"items":    {"order_uid", "position"},
}

// nestedTables maps the JSON fields of orders.Order that are stored in a table of
// their own to that table; every other field of Order is a column of orders.
var nestedTables = map[string]string{
	"delivery": "delivery",
	"payment":  "payment",
	"items":    "items",
}

// pgTypes is the schema type (information_schema.columns.data_type) of the Go
// type of a declared column's values.
var pgTypes = map[reflect.Type]string{
	reflect.TypeFor[string]():    "text",
	reflect.TypeFor[int32]():     "integer",
	reflect.TypeFor[int64]():     "bigint",
	reflect.TypeFor[time.Time](): "timestamp with time zone",
}

// TestColumnsMatchSchema checks the declarations against the migrated database:
// every column of orders, delivery, payment and items is declared (or listed in
// notWritten), and every declared column exists with the type of its Go values.
func TestColumnsMatchSchema(t *testing.T) {
	ctx := context.Background()
	db := dbtest.New(t).Bun
	tables := ordersdb.BatchRows([]orders.Record{filledRecord(t)})
	if got := tableNames(tables); !slices.Equal(got, []string{"orders", "delivery", "payment", "items"}) {
		t.Fatalf("BatchRows tables %v", got)
	}
	for _, tr := range tables {
		schema := map[string]string{} // column -> data_type
		rows, err := db.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = ?`, tr.Table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var name, typ string
			if err := rows.Scan(&name, &typ); err != nil {
				t.Fatal(err)
			}
			schema[name] = typ
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
		if len(schema) == 0 {
			t.Fatalf("table %s is not in the migrated schema", tr.Table)
		}
		row := tr.Row(0)
		for k, col := range tr.Columns {
			typ, ok := schema[col]
			if !ok {
				t.Errorf("%s.%s is declared in ordersdb but not in the migrations", tr.Table, col)
				continue
			}
			if want := pgTypes[reflect.TypeOf(row[k])]; typ != want {
				t.Errorf("%s.%s is %s in the schema but written as %T (%s)", tr.Table, col, typ, row[k], want)
			}
			delete(schema, col)
		}
		for _, col := range notWritten[tr.Table] {
			if _, ok := schema[col]; !ok {
				t.Errorf("%s.%s is listed in notWritten but is no column of the schema", tr.Table, col)
			}
			delete(schema, col)
		}
		for col := range schema {
			t.Errorf("%s.%s is in the migrations but not declared in ordersdb (columns.go) nor listed in notWritten", tr.Table, col)
		}
	}
}

// TestTombstoneColumnsMatchOrders checks order_tombstones against orders: the
// store writes a tombstone's uid and version into the columns of the same names
// and types as in orders (its key and source columns), plus deleted_at.
func TestTombstoneColumnsMatchOrders(t *testing.T) {
	ctx := context.Background()
	db := dbtest.New(t).Bun
	types := func(table string) map[string]string {
		cols := map[string]string{}
		rows, err := db.QueryContext(ctx, `SELECT column_name, data_type FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = ?`, table)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var name, typ string
			if err := rows.Scan(&name, &typ); err != nil {
				t.Fatal(err)
			}
			cols[name] = typ
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return cols
	}
	ordersCols, tombCols := types("orders"), types("order_tombstones")
	if tombCols["deleted_at"] != "timestamp with time zone" {
		t.Errorf("order_tombstones.deleted_at is %q, want timestamptz", tombCols["deleted_at"])
	}
	delete(tombCols, "deleted_at")
	want := append([]string{"order_uid"}, notInModel["orders"]...) // the key and the version
	for _, c := range want {
		if tombCols[c] == "" || tombCols[c] != ordersCols[c] {
			t.Errorf("order_tombstones.%s is %q, want %q as in orders", c, tombCols[c], ordersCols[c])
		}
		delete(tombCols, c)
	}
	for c := range tombCols {
		t.Errorf("order_tombstones.%s is neither the key nor a version column of orders", c)
	}
}

// TestColumnsMatchModel checks the declarations against the model: every JSON
// field of Order, Delivery, Payment and Item is a column of its table with the
// same name, written from that very field (every field holds a distinct value),
// and every declared column is a field of the model or listed in notInModel.
func TestColumnsMatchModel(t *testing.T) {
	rec := filledRecord(t)
	o := &rec.Order
	byName := map[string]ordersdb.TableRows{}
	for _, tr := range ordersdb.BatchRows([]orders.Record{rec}) {
		byName[tr.Table] = tr
	}

	// The model structs stored in each table, one per row: the scalar fields of
	// Order in orders, its objects and arrays in tables of their own.
	ov := reflect.ValueOf(o).Elem()
	model := map[string][]reflect.Value{"orders": {ov}}
	for i := range ov.NumField() {
		name, f := jsonName(ov.Type().Field(i)), ov.Field(i)
		if name == "" || (!isStruct(f.Type()) && f.Kind() != reflect.Slice) {
			continue
		}
		table, ok := nestedTables[name]
		if !ok {
			t.Errorf("order field %q is an object or array stored in no table: add a table (migration, declaration in ordersdb) and list it in nestedTables", name)
			continue
		}
		if f.Kind() == reflect.Slice {
			for j := range f.Len() {
				model[table] = append(model[table], f.Index(j))
			}
		} else {
			model[table] = append(model[table], f)
		}
	}

	for table, structs := range model {
		tr, ok := byName[table]
		if !ok {
			t.Errorf("no table %s in ordersdb.BatchRows", table)
			continue
		}
		if tr.Len != len(structs) {
			t.Fatalf("%s: %d rows written, want %d", table, tr.Len, len(structs))
		}
		for i, sv := range structs {
			fields := map[string]any{} // JSON name -> value, of the scalar fields of sv
			for j := range sv.NumField() {
				name, f := jsonName(sv.Type().Field(j)), sv.Field(j)
				if name != "" && !(table == "orders" && nestedTables[name] != "") {
					fields[name] = f.Interface()
				}
			}
			row := tr.Row(i)
			for k, c := range tr.Columns {
				want, ok := fields[c]
				switch {
				case !ok && !slices.Contains(notInModel[table], c) && i == 0:
					t.Errorf("%s.%s is declared in ordersdb but is no JSON field of %s (nor listed in notInModel)", table, c, sv.Type().Name())
				case ok && !reflect.DeepEqual(row[k], want):
					t.Errorf("%s.%s of row %d is written as %v, want the value of %s.%s, %v", table, c, i, row[k], sv.Type().Name(), c, want)
				}
				delete(fields, c)
			}
			if i > 0 {
				continue
			}
			for name := range fields {
				t.Errorf("field %s.%s of the model is not written: declare column %s.%s in ordersdb (columns.go) and add it in a migration", sv.Type().Name(), name, table, name)
			}
		}
	}

	// The columns that are no field of the model.
	for table, cols := range notInModel {
		for _, c := range cols {
			if !slices.Contains(byName[table].Columns, c) {
				t.Errorf("%s.%s is listed in notInModel but not declared", table, c)
			}
		}
	}
	for _, table := range []string{"delivery", "payment", "items"} {
		tr := byName[table]
		for i := range tr.Len {
			if got := value(t, tr, i, "order_uid"); got != o.OrderUID {
				t.Errorf("%s.order_uid of row %d is written as %v, want %s", table, i, got, o.OrderUID)
			}
			if table != "items" {
				continue
			}
			if got := value(t, tr, i, "position"); got != int32(i) {
				t.Errorf("items.position of row %d is written as %v, want %d", i, got, i)
			}
		}
	}
	if got := value(t, byName["orders"], 0, "source_partition"); got != rec.Version.Partition {
		t.Errorf("orders.source_partition is written as %v, want %d", got, rec.Version.Partition)
	}
	if got := value(t, byName["orders"], 0, "source_offset"); got != rec.Version.Offset {
		t.Errorf("orders.source_offset is written as %v, want %d", got, rec.Version.Offset)
	}
	if got := value(t, byName["orders"], 0, "source_time"); got != rec.Version.Time {
		t.Errorf("orders.source_time is written as %v, want %d", got, rec.Version.Time)
	}
}

// filledRecord returns a record whose every model field holds a distinct
// non-zero value (strings "v1", "v2", ..., numbers 1, 2, ..., times 1, 2, ...
// seconds after 2021-01-01 UTC), with two items.
func filledRecord(t *testing.T) orders.Record {
	t.Helper()
	rec := orders.Record{Version: orders.Version{Partition: 7001, Offset: 7002, Time: 7003}}
	n := 0
	var fill func(v reflect.Value, path string)
	fill = func(v reflect.Value, path string) {
		n++
		switch {
		case v.Type() == reflect.TypeFor[time.Time]():
			v.Set(reflect.ValueOf(time.Date(2021, 1, 1, 0, 0, n, 0, time.UTC)))
		case v.Kind() == reflect.String:
			v.SetString("v" + strconv.Itoa(n))
		case v.Kind() == reflect.Int64 || v.Kind() == reflect.Int32:
			v.SetInt(int64(n))
		case v.Kind() == reflect.Struct:
			for i := range v.NumField() {
				fill(v.Field(i), path+"."+jsonName(v.Type().Field(i)))
			}
		case v.Kind() == reflect.Slice:
			v.Set(reflect.MakeSlice(v.Type(), 2, 2))
			for i := range v.Len() {
				fill(v.Index(i), path+"["+strconv.Itoa(i)+"]")
			}
		default:
			t.Fatalf("model field %s has type %s, which ordersdb has no column kind for: add one (columns.go) and extend this test", path, v.Type())
		}
	}
	fill(reflect.ValueOf(&rec.Order).Elem(), "order")
	return rec
}

func isStruct(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != reflect.TypeFor[time.Time]()
}

// jsonName returns the JSON name of a struct field, or "" when it is not encoded.
func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

func value(t *testing.T, tr ordersdb.TableRows, row int, col string) any {
	t.Helper()
	k := slices.Index(tr.Columns, col)
	if k < 0 {
		t.Fatalf("%s has no column %s", tr.Table, col)
	}
	return tr.Row(row)[k]
}

func tableNames(tables []ordersdb.TableRows) []string {
	var names []string
	for _, tr := range tables {
		names = append(names, tr.Table)
	}
	return names
}
