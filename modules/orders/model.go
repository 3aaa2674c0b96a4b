// Package orders is the domain module: the order model, its validation rules, the
// domain errors and the store contract that the database and cache packages implement.
package orders

import "time"

// Order is one customer order, byte-compatible with the JSON shape of the canonical sample (Sample).
type Order struct {
	OrderUID          string    `json:"order_uid" validate:"required,uid"`
	TrackNumber       string    `json:"track_number" validate:"required,max=128"`
	Entry             string    `json:"entry" validate:"required,max=64"`
	Delivery          Delivery  `json:"delivery"`
	Payment           Payment   `json:"payment"`
	Items             []Item    `json:"items" validate:"required,min=1,max=1000,dive"`
	Locale            string    `json:"locale" validate:"max=16"`
	InternalSignature string    `json:"internal_signature" validate:"max=256"`
	CustomerID        string    `json:"customer_id" validate:"required,max=128"`
	DeliveryService   string    `json:"delivery_service" validate:"max=128"`
	ShardKey          string    `json:"shardkey" validate:"max=16"`
	SmID              int64     `json:"sm_id" validate:"gte=0"`
	DateCreated       time.Time `json:"date_created" validate:"required"`
	OofShard          string    `json:"oof_shard" validate:"max=16"`
}

// Delivery is where and to whom an order is delivered.
type Delivery struct {
	Name    string `json:"name" validate:"required,max=256"`
	Phone   string `json:"phone" validate:"required,max=32"`
	Zip     string `json:"zip" validate:"max=32"`
	City    string `json:"city" validate:"required,max=256"`
	Address string `json:"address" validate:"required,max=512"`
	Region  string `json:"region" validate:"max=256"`
	Email   string `json:"email" validate:"omitempty,email,max=256"`
}

// Payment is the payment of an order; money is in minor units (integers).
type Payment struct {
	Transaction  string `json:"transaction" validate:"required,max=128"`
	RequestID    string `json:"request_id" validate:"max=128"`
	Currency     string `json:"currency" validate:"required,currency3"`
	Provider     string `json:"provider" validate:"required,max=64"`
	Amount       int64  `json:"amount" validate:"gte=0"`
	PaymentDt    int64  `json:"payment_dt" validate:"gte=0"`
	Bank         string `json:"bank" validate:"max=64"`
	DeliveryCost int64  `json:"delivery_cost" validate:"gte=0"`
	GoodsTotal   int64  `json:"goods_total" validate:"gte=0"`
	CustomFee    int64  `json:"custom_fee" validate:"gte=0"`
}

// Item is one line of an order.
type Item struct {
	ChrtID      int64  `json:"chrt_id" validate:"gte=0"`
	TrackNumber string `json:"track_number" validate:"max=128"`
	Price       int64  `json:"price" validate:"gte=0"`
	Rid         string `json:"rid" validate:"max=128"`
	Name        string `json:"name" validate:"max=512"`
	Sale        int64  `json:"sale" validate:"gte=0,lte=100"`
	Size        string `json:"size" validate:"max=32"`
	TotalPrice  int64  `json:"total_price" validate:"gte=0"`
	NmID        int64  `json:"nm_id" validate:"gte=0"`
	Brand       string `json:"brand" validate:"max=256"`
	Status      int64  `json:"status"`
}
