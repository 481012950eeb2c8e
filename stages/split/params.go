package split

import "github.com/pipeml/pipe/stages"

// param declares a parameter of the stage (see stages.Param).
var param = stages.NewParam

var strList = stages.StringList
